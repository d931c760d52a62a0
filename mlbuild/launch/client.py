"""The `mlbuild` console script: hand the command to the resident server, or run it here.

Start-up matters here more than anywhere: this module imports only what the interpreter has
loaded already and the standard library's C modules (`_socket` and `_signal` rather than
`socket` and `signal`, which import `enum`: 10 ms). The command runs here, exactly as before,
when MLBUILD_SERVER=0, when it may ask for credentials on the terminal (push, pull, fetch: a
forked command has no controlling terminal), when a standard stream is closed, or when no
server answers; in the last case a server is started for the next command.
"""

from __future__ import annotations

import _signal
import _socket
import marshal
import os
import select
import stat
import sys
import zlib

SWITCH = "MLBUILD_SERVER"  # 0, off, no or false: every command in its own interpreter
OFF = ("0", "off", "no", "false")
# The commands a server runs: those that work in the project and its cache. Everything else
# (push, pull, fetch, `data status` and `model get` against the remote, `model promote`'s
# remote check) runs in the client: git, ssh and remotes may prompt on /dev/tty, which a
# forked command does not have. So do options that name a remote, anywhere.
SERVED = ("run", "status", "dag", "compile", "verify", "log", "lineage", "impact", "audit",
          "kpi", "ui", "serve", "predict", "monitor")
SERVED_GROUPS = {"exp": ("show", "plot", "apply", "branch", "remove", "run"),
                 "model": ("list", "history", "register")}
REMOTE_OPTIONS = ("--pull", "--remote", "--repo")
# the interpreter reads these at start-up (sys.path, flags, the streams' encoding): part of
# the server's identity, as the interpreter, sys.path and mlbuild's own files are
STARTUP = ("PYTHON", "LANG", "LC_", "LANGUAGE")
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGTSTP, _signal.SIGCONT, _signal.SIGWINCH, _signal.SIGUSR1,
             _signal.SIGUSR2, _signal.SIGALRM)
UNCATCHABLE = (_signal.SIGKILL, _signal.SIGSTOP)
CREDENTIALS = (b"Uid:", b"Gid:", b"Groups:", b"Cap", b"NoNewPrivs:", b"Seccomp:")
# the terminal's signals, sent to the foreground group: passed to the command's group
TERMINAL = (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGWINCH,
            _signal.SIGHUP, _signal.SIGCONT)
SI_KERNEL = 0x80  # si_code of a signal the terminal sent (Ctrl-C, Ctrl-\, Ctrl-Z)
ANSWER_TIMEOUT = 30.0  # seconds a server gets to accept and start the command
POLL = 0.05  # seconds between looks at pending signals while the command runs
SPAWN_GRACE = 60.0  # seconds a started server gets to listen before another is started
SOCKET_PATH_MAX = 107  # sun_path's 108 bytes, the last one a NUL
REFUSAL_KEPT = 3600.0  # seconds before a server that refused to serve is tried again
BOOT = ("import sys\nif not sys.flags.safe_path:\n    del sys.path[0]\n"
        "from mlbuild.launch.server import main\nmain()")
EXIT_INTERNAL = 3  # mlbuild.errors.EXIT_INTERNAL, not imported: start-up


def main() -> None:
    """Console-script entry point."""
    code = _through_server(sys.argv[1:]) if _wanted(sys.argv[1:]) else None
    if code is None:
        from mlbuild.cli import main as run_here

        run_here()
        return
    _exit_as(code)


def _wanted(args: list[str]) -> bool:
    if os.environ.get(SWITCH, "1").strip().lower() in OFF or sys.platform != "linux":
        return False
    if any(a.partition("=")[0] in REMOTE_OPTIONS or (a.startswith("-r") and a[1:2] != "-")
           for a in args):
        return False
    words = [a for a in args if not a.startswith("-")]
    if not words:  # --version, --help
        return True
    group = SERVED_GROUPS.get(words[0])
    return words[0] in SERVED if group is None else len(words) > 1 and words[1] in group


def runtime_dir() -> str | None:
    """The directory of this user's servers ($XDG_RUNTIME_DIR/mlbuild, else
    /tmp/mlbuild-UID): None unless it is a directory only this user can enter."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    try:
        own_base = os.path.isabs(base) and os.stat(base).st_uid == os.getuid()
    except OSError:
        own_base = False
    path = os.path.join(base, "mlbuild") if own_base else f"/tmp/mlbuild-{os.getuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    mine = info.st_uid == os.getuid() and not info.st_mode & 0o077
    return path if stat.S_ISDIR(info.st_mode) and mine else None


def fingerprint(path_tail: list[str]) -> bytes:
    """What a server must share with its client: the interpreter, sys.path after the script's
    own directory (and site-packages' mtime: installing a package changes it), the
    start-up variables, the process's limits and placement, and every source file of mlbuild
    (an edited checkout)."""
    parts = [sys.executable, sys.version, str(os.getuid()), *path_tail]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(STARTUP))
    parts += _process()
    for entry in path_tail:  # a package installed or removed (not a project on the path)
        if os.path.basename(entry) in ("site-packages", "dist-packages"):
            try:
                parts.append(str(os.stat(entry).st_mtime_ns))
            except OSError:
                parts.append("-")
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts += _sources(package)
    return "\0".join(parts).encode(errors="surrogateescape")


def _process() -> list[str]:
    """What a forked command would take from the server rather than from its client: resource
    limits (`ulimit`), the control group (`systemd-run`, a container), the namespaces, user,
    groups, capabilities and security label (`newgrp`, `sg`, AppArmor, SELinux), the nice
    value and the CPU affinity (`nice`, `taskset`), the OOM score adjustment, the umask (read
    once at import by some modules), the interpreter's flags and -W/-X options."""
    umask = os.umask(0o022)
    os.umask(umask)
    facts = [str(os.getpriority(os.PRIO_PROCESS, 0)), str(sorted(os.sched_getaffinity(0))),
             oct(umask), repr(sys.flags), repr(sys.warnoptions), repr(sys._xoptions)]
    for space in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
        try:
            facts.append(os.readlink(f"/proc/self/ns/{space}"))
        except OSError:
            facts.append("-")
    for name in ("limits", "cgroup", "oom_score_adj", "attr/current"):
        try:
            with open(f"/proc/self/{name}", "rb") as fobj:
                facts.append(fobj.read().decode(errors="replace"))
        except OSError:
            facts.append("-")
    try:  # user and groups (newgrp, sg), capabilities, no_new_privs, seccomp
        with open("/proc/self/status", "rb") as fobj:
            facts += [line.decode(errors="replace") for line in fobj
                      if line.startswith(CREDENTIALS)]
    except OSError:
        facts.append("-")
    return facts


def _sources(folder: str, found: list[str] | None = None) -> list[str]:
    found = [] if found is None else found
    if not os.path.isdir(folder):  # removed: a stale server's package
        found.append(f"{folder}:-")
        return found
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                _sources(entry.path, found)
            elif entry.name.endswith(".py"):
                info = entry.stat()
                found.append(f"{entry.path}:{info.st_mtime_ns}:{info.st_size}")
    return found


class socket_path:  # noqa: N801  # a context manager; contextlib's import costs start-up
    """A path to NAME in DIRECTORY that a Unix socket accepts (107 bytes at most): through
    /proc/self/fd when the directory's own path is longer."""

    def __init__(self, directory: str, name: str) -> None:
        self.fd = -1
        self.path = f"{directory}/{name}"
        if len(self.path.encode()) > SOCKET_PATH_MAX:
            self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            self.path = f"/proc/self/fd/{self.fd}/{name}"

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *_exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def path_tail() -> list[str]:
    """sys.path without the script's own directory (none with -P / PYTHONSAFEPATH)."""
    return sys.path if sys.flags.safe_path else sys.path[1:]


def key_of(print_: bytes) -> str:
    """The socket's name for a fingerprint (the server compares the whole fingerprint)."""
    return f"{zlib.crc32(print_):08x}{zlib.adler32(print_):08x}"


def _through_server(args: list[str]) -> int | None:
    """The command's exit status (negative: the signal that killed it), or None when it has
    to run here."""
    where = _where()
    if where is None:
        return None
    directory, cwd = where
    print_ = fingerprint(path_tail())
    key = key_of(print_)
    # until the command has them; one the client ignores stays ignored (a blocked signal
    # would be queued, not dropped)
    forwarded = [s for s in FORWARDED if _signal.getsignal(s) != _signal.SIG_IGN]
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, forwarded)
    answers = _Answers()
    try:
        answers.conn.settimeout(ANSWER_TIMEOUT)
        with socket_path(directory, f"{key}.sock") as path:
            answers.conn.connect(path)
        creds = answers.conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
            raise PermissionError("another user's server")
    except OSError:
        answers.conn.close()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        _start_server(directory, key)
        return None
    body = marshal.dumps({
        "fingerprint": print_, "argv": sys.argv, "orig_argv": sys.orig_argv,
        "path": sys.path, "cwd": cwd, "env": dict(os.environ), "mask": sorted(mask),
        "ignored": [n for n in range(1, _signal.NSIG) if n not in UNCATCHABLE
                    and _signal.getsignal(n) == _signal.SIG_IGN]})
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    try:
        answers.conn.sendmsg([len(body).to_bytes(4, "big")],
                             [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        answers.conn.sendall(body)
        answer = answers.line()
    except OSError:
        answer = b""
    if answer.startswith(b"refused "):  # nothing was started: it runs here
        answers.conn.close()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        return None
    if not answer.startswith(b"pid "):  # once asked, never run twice: whether it started is
        return _lost(b"before the command started")  # not known
    answers.conn.settimeout(None)
    return _follow(answers, int(answer.split()[1]), forwarded)


def _where() -> tuple[str, str] | None:
    """The runtime directory and the working directory; None when there is none, or a
    standard stream is closed (nothing to pass on)."""
    directory = runtime_dir()
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        cwd = os.getcwd()
    except OSError:
        return None
    return (directory, cwd) if directory is not None else None


class _Answers:
    """The server's newline-ended answers on one connection (`pid N`, `exit N`,
    `refused WHY`); bytes read past one answer are kept for the next."""

    def __init__(self) -> None:
        self.conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.buffer = b""

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(256)
            if not chunk:
                return b""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def ready(self) -> bool:
        return b"\n" in self.buffer or bool(select.select([self.conn], [], [], POLL)[0])


def _follow(answers: _Answers, pid: int, forwarded: list[int]) -> int:
    """Forward signals to the running command until its exit status arrives."""
    while not answers.ready():
        while (info := _signal.sigtimedwait(forwarded, 0)) is not None:
            _forward(pid, info.si_signo, info.si_code)
    try:
        answer = answers.line()
    except OSError:
        answer = b""
    if not answer.startswith(b"exit "):
        return _lost(b"before the command ended")
    return int(answer.split()[1])


def _lost(when: bytes) -> int:
    os.write(2, b"mlbuild: internal error: the resident server stopped " + when +
             b" (MLBUILD_SERVER=0 runs commands without it)\n")
    return EXIT_INTERNAL


def _forward(pid: int, signum: int, code: int) -> None:
    """Pass a signal on: the terminal's to the command's process group (as the terminal
    would have sent it to the whole foreground group), anyone else's to the command."""
    group = signum in (_signal.SIGTSTP, _signal.SIGCONT) or (
        code == SI_KERNEL and signum in TERMINAL)
    send = _signal.SIGSTOP if signum == _signal.SIGTSTP else signum  # Ctrl-Z: stop it all
    try:
        if group:
            try:
                os.killpg(pid, send)
            except ProcessLookupError:  # not its group's leader yet (setsid comes first)
                os.kill(pid, send)
        else:
            os.kill(pid, send)
    except ProcessLookupError:
        pass
    if signum == _signal.SIGTSTP:  # then stop here as the terminal stops a job ("Stopped")
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [_signal.SIGTSTP])
        os.kill(os.getpid(), _signal.SIGTSTP)  # stops here, until the shell's SIGCONT
        _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGTSTP])
        if _signal.SIGCONT not in _signal.sigpending():  # not stopped: an orphaned group
            _forward(pid, _signal.SIGCONT, 0)  # ignores it, and so does a fresh mlbuild


def _exit_as(code: int) -> None:
    """Leave with the command's status; a command a signal killed kills this process the same
    way, so the shell sees the same."""
    if code < 0:
        signum = -code
        if signum not in (_signal.SIGKILL, _signal.SIGSTOP):  # the only ones never caught
            _signal.signal(signum, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        code = 128 + signum
    os._exit(code)


def _start_server(directory: str, key: str) -> None:
    """Start a server for the next command, detached (its own session, reparented to init):
    one at a time per fingerprint, never where one refused to serve."""
    base = f"{directory}/{key}"
    import time

    try:  # a refusal is retried after an hour (it may have been a passing failure)
        if time.time() - os.stat(f"{base}.refused").st_mtime < REFUSAL_KEPT:
            return
    except OSError:
        pass
    marker = f"{base}.spawned"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        try:
            if time.time() - os.stat(marker).st_mtime < SPAWN_GRACE:  # one is starting
                return
            os.utime(marker)
        except OSError:
            return
    except OSError:
        return
    try:
        child = os.fork()
    except OSError:
        return
    if child:
        os.waitpid(child, 0)
        return
    try:  # the first child: a new session, then the server as its child, then gone
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.chdir("/")
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # a caller's jobserver pipe, a flock'd fd
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", BOOT, directory, key])
    finally:
        os._exit(0)
