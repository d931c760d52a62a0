"""The resident server: imports mlbuild once, then forks one process per command.

Started detached by a client that found none (`client._start_server`), as
`python -c BOOT DIRECTORY KEY`. It takes DIRECTORY/KEY.lock (one server per fingerprint),
imports mlbuild's modules (see `ahead`), Hydra and PyYAML, noting the environment variables
the imports looked up, then listens on DIRECTORY/KEY.sock. It refuses to serve (and says why
in KEY.refused) when an import started a thread (a fork keeps only the forking thread) or
scanned the whole environment.

Each connection gets a forked monitor. It reads the request (argv, working directory,
environment, umask and the client's three standard streams), refuses when the client's
fingerprint differs (mlbuild, an installed package or the interpreter changed: the server
then exits) or a variable an import read has another value there, and otherwise forks the
command: a new session (no controlling terminal; the client forwards the terminal's
signals), the client's streams, directory, environment, umask, argv and sys.path, new
`sys.std*` objects as the interpreter makes them (line-buffered on a terminal), a process
title of `mlbuild ARGS`, then `mlbuild.cli.main` and the interpreter's own exit. The monitor
tells the client the command's pid and, once it is reaped, its exit status; it kills the
command if the client goes away first (kill -9 of the client stops the build as it would
stop mlbuild itself). The server exits after MLBUILD_SERVER_IDLE seconds (default 1,800)
without a command, or once its fingerprint is stale: it looks every 30 s, and whenever a new
server starts beside it (SIGUSR1).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import io
import marshal
import os
import select
import signal
import socket
import struct
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.launch import client
from mlbuild.launch.envreads import SCANNED, differing, recording

IDLE = 1800.0  # seconds without a command before the server exits (MLBUILD_SERVER_IDLE)
CHECK = 30.0  # seconds between looks at whether the fingerprint went stale
REQUEST_TIMEOUT = 10.0  # seconds a client gets to send its request
# modules that import a whole framework at the top, for one command each: the HTTP server
# (FastAPI, pydantic) and the Kubeflow local run (kfp, protobuf, Google's auth)
HEAVY = ("app.py", "kfplocal.py")
TITLE = "mlbuild-server"  # the process title: `mlbuild-server KEY (...)`
STOPPING = (signal.SIGTERM, signal.SIGUSR1)  # the server's own: they may make it close()


def ahead() -> list[str]:
    """The modules a server imports before its first command: mlbuild's own and what they
    import at the top (but HEAVY), Hydra and PyYAML. Not DVC's (0.5 s, imported by the commands that
    drive it): its colorama would reset the terminal's colours at every command's exit."""
    package = Path(client.__file__).resolve().parents[1]
    own = [".".join(p.relative_to(package.parent).with_suffix("").parts)
           for p in sorted(package.rglob("[a-z]*.py")) if "hook" not in p.parts
           and p.name not in HEAVY]
    return ["yaml", "hydra", "omegaconf", *own, "setproctitle", "ctypes"]


@dataclass
class Command:
    """One request, in the process that becomes the command."""

    request: dict[str, Any]
    fds: list[int]
    filters: list[Any]
    monitor: int  # its parent: it dies with it


class _Server:
    def __init__(self, directory: str, key: str, lock: int) -> None:
        self.base = f"{directory}/{key}"
        self.lock = lock  # flock'd: closed in every fork, so it ends with the server
        self.env = dict(os.environ)
        self.read: set[str] = set()
        self.path = list(sys.path)  # before an import adds to it
        self.print_ = client.fingerprint(self.path)
        self.filters: list[Any] = []
        self.pid = os.getpid()

    def prepare(self) -> str | None:
        """Import ahead; why it cannot serve, or None."""
        self.filters = list(warnings.filters)
        with recording(self.read):
            for name in ahead():
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        if "*" in self.read:
            return "an import read the whole environment"
        if len(list(Path("/proc/self/task").iterdir())) > 1:
            return "an import started a thread"
        try:
            os.close(os.pidfd_open(os.getpid()))  # how a monitor waits (Linux 5.3+)
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl  # noqa: B018  # how a command dies with it
        except (OSError, ImportError, AttributeError) as exc:
            return f"no pidfd_open or prctl here: {exc}"
        now = client.fingerprint(self.path)
        if now != self.print_:
            changed = sorted(set(now.split(b"\0")) ^ set(self.print_.split(b"\0")))
            return ("mlbuild, a package or the process changed while the server imported "
                    f"them: {b' | '.join(changed)[:300].decode(errors='replace')}")
        return None

    def refusal(self, request: dict[str, Any]) -> str | None:
        """Why this request has to run in a new interpreter, or None."""
        if request.get("fingerprint") != self.print_:
            if os.getppid() == self.pid:  # stale: the next client starts a new one
                os.kill(self.pid, signal.SIGTERM)
            return "stale"
        changed = differing(self.read, (*SCANNED, "HOME"), self.env, request["env"])
        return f"environment: {', '.join(changed)}" if changed else None

    def listen(self) -> socket.socket:
        """The listening socket, bound where clients look for it."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = Path(f"{self.base}.{os.getpid()}.sock")
        temporary.unlink(missing_ok=True)
        with client.socket_path(str(temporary.parent), temporary.name) as path:
            listener.bind(path)
        listener.listen(64)
        temporary.rename(f"{self.base}.sock")  # clients see a listening socket or none
        Path(f"{self.base}.pid").write_text(f"{os.getpid()}\n")
        return listener

    def serve(self, listener: socket.socket) -> Command:
        """Answer until idle or stale; returns only in a forked command."""
        gc.collect()
        gc.freeze()  # what the imports made stays shared with every fork
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
        signal.signal(signal.SIGTERM, lambda *_: self.close(listener))
        signal.signal(signal.SIGUSR1, lambda *_: self.recheck(listener))
        _nudge_others(self.base)
        idle = _idle()
        last = time.monotonic()
        while True:
            if not select.select([listener], [], [], min(CHECK, idle))[0]:
                if time.monotonic() - last >= idle:
                    self.close(listener)
                self.recheck(listener)
                continue
            signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)  # no close() mid-hand-over
            try:
                conn, _ = listener.accept()
            except OSError:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
                continue
            last = time.monotonic()
            try:
                child = os.fork()
            except OSError:
                _refuse(conn, "the server could not fork")
                child = -1
            if child == 0:
                listener.close()
                os.close(self.lock)
                return self.watch(conn)
            conn.close()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)

    def recheck(self, listener: socket.socket) -> None:
        """Exit if mlbuild, a package or the interpreter changed since the imports (also on
        SIGUSR1: a new server started, maybe for the changed files)."""
        if client.fingerprint(self.path) != self.print_:
            self.close(listener)

    def close(self, listener: socket.socket) -> None:
        """Stop listening and exit; a client already queued is told to run its command
        itself. The commands running go on (they are not this process's children)."""
        with contextlib.suppress(OSError):
            Path(f"{self.base}.sock").unlink()
        listener.setblocking(False)
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with contextlib.suppress(OSError):
                    conn.sendall(b"refused stopping\n")
                conn.close()
        with contextlib.suppress(OSError):
            Path(f"{self.base}.pid").unlink()
        os._exit(0)

    def watch(self, conn: socket.socket) -> Command:
        """The monitor of one connection; returns only in the forked command."""
        for signum in (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
        import setproctitle

        setproctitle.setproctitle(f"mlbuild-monitor {Path(self.base).name}")
        monitor = os.getpid()
        try:
            request, fds = _receive(conn)
            reason = self.refusal(request)
            if reason is not None:
                _refuse(conn, reason)
                os._exit(0)
            pid = os.fork()
        except BaseException as exc:  # nothing started: the client may run it itself
            _refuse(conn, f"{type(exc).__name__}: {exc}")
            os._exit(0)
        if pid == 0:
            conn.close()
            return Command(request, fds, self.filters, monitor)
        try:
            for fd in fds:
                os.close(fd)
            _follow(conn, pid)
        finally:
            os._exit(0)


def _idle() -> float:
    try:
        return max(1.0, float(os.environ.get("MLBUILD_SERVER_IDLE", IDLE)))
    except ValueError:
        return IDLE


def running(directory: Path) -> dict[Path, int]:
    """The servers of a runtime directory that are alive: pid file -> pid. A pid file a
    killed server left behind names nothing, or a process that is not a server."""
    found = {}
    for pidfile in directory.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            key = pidfile.name.removesuffix(".pid")
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(
                    f"{TITLE} {key} ".encode()):
                found[pidfile] = pid
    return found


def _refuse(conn: socket.socket, reason: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(f"refused {' '.join(reason.split())}\n".encode())


def _nudge_others(mine: str) -> None:
    """Ask the other servers of this directory to look whether they went stale, and remove
    what servers gone long ago left (every edit of an editable checkout is a new key)."""
    folder = Path(mine).parent
    live = running(folder)
    for pidfile, pid in live.items():
        if str(pidfile) != f"{mine}.pid":
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)
    _tidy(folder, {p.name.removesuffix(".pid") for p in live})


def _tidy(folder: Path, live: set[str]) -> None:
    """Remove the files of keys no server holds: a lock nobody has flock'd (taken while it is
    removed), and a refusal or spawn marker older than the client still heeds."""
    now = time.time()
    for path in folder.iterdir():
        key, _, suffix = path.name.partition(".")
        if key in live:
            continue
        with contextlib.suppress(OSError):
            if suffix == "lock":
                fd = os.open(path, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    for other in ("sock", "pid"):
                        (folder / f"{key}.{other}").unlink(missing_ok=True)
                    path.unlink()
                finally:
                    os.close(fd)
            elif suffix in ("refused", "spawned") and now - path.stat().st_mtime > (
                    client.REFUSAL_KEPT if suffix == "refused" else client.SPAWN_GRACE):
                path.unlink()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request: a length-prefixed marshalled dict, the client's fds 0, 1 and 2, from a
    process of this user."""
    conn.settimeout(REQUEST_TIMEOUT)
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    if struct.unpack("3i", creds)[1] != os.getuid():
        raise PermissionError("another user's client")
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    try:
        size = int.from_bytes(head, "big")
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise EOFError
            body += chunk
        request = marshal.loads(body)
        if len(fds) != 3 or not isinstance(request, dict):
            raise ValueError("a malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.settimeout(None)
    return request, fds


def _follow(conn: socket.socket, pid: int) -> None:
    """Tell the client the command's pid, then its exit status; kill it if the client goes."""
    try:
        conn.sendall(f"pid {pid}\n".encode())
        pidfd = os.pidfd_open(pid)
        watching: list[Any] = [conn, pidfd]
        while pidfd not in select.select(watching, [], [])[0]:
            with contextlib.suppress(OSError):
                if conn.recv(1):
                    continue
            os.kill(pid, signal.SIGKILL)  # the client is gone; not reaped yet: this command
            watching = [pidfd]
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def become(command: Command) -> None:
    """In the forked command: take on the client's process state and run mlbuild's CLI the
    way the console script does."""
    request = command.request
    os.setsid()
    _die_with_parent(command.monitor)
    import setproctitle  # first: it finds the title's room in the original environment block

    setproctitle.setproctitle(" ".join(["mlbuild", *request["argv"][1:]]))
    for target, fd in enumerate(command.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # the C library's time zone, from TZ, as at an interpreter's start
    _signals(set(request["ignored"]))
    warnings.filters[:] = command.filters  # type: ignore[index]
    warnings._filters_mutated()  # type: ignore[attr-defined]  # forget warnings already shown
    importlib.invalidate_caches()  # files added to sys.path's folders since the imports
    sys.argv = list(request["argv"])
    sys.orig_argv = list(request["orig_argv"])
    sys.path[:] = request["path"]
    _new_streams()
    faulthandler = sys.modules.get("faulthandler")
    if faulthandler is not None and faulthandler.is_enabled():  # PYTHONFAULTHANDLER, -X dev
        faulthandler.enable()  # its handlers, which _signals reset, on the new stderr
    rich = sys.modules.get("rich")
    if rich is not None:
        rich._console = None  # type: ignore[attr-defined]  # made for the server's streams
    signal.pthread_sigmask(signal.SIG_SETMASK, request["mask"])  # the client's, last
    from mlbuild.cli import main as run

    run()


def _signals(ignored: set[int]) -> None:
    """Every signal's disposition as the client's interpreter had it: ignored where the
    client ignored it (SIGPIPE and SIGXFSZ always: Python's own), SIGINT raising
    KeyboardInterrupt, the default otherwise."""
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        handler: Any = signal.SIG_IGN if signum in ignored else (
            signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):  # the C library's own (32, 33)
            signal.signal(signum, handler)


def _die_with_parent(monitor: int) -> None:
    """The command dies with its monitor (PR_SET_PDEATHSIG): never a command nobody watches,
    whose client could no longer stop it."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != monitor:  # it died before that (the orphan went to a reaper)
        os._exit(1)


def _new_streams() -> None:
    """sys.stdin, stdout and stderr for fds 0-2 as the interpreter makes them at start-up:
    the same encoding and error handlers, line buffering on a terminal (stderr always)."""
    streams = []
    for fd, old in enumerate((sys.__stdin__, sys.__stdout__, sys.__stderr__)):
        assert old is not None
        unbuffered = old.write_through
        mode = "rb" if fd == 0 else "wb"
        buffer = open(fd, mode, 0 if unbuffered and fd else -1, closefd=False)  # noqa: SIM115
        raw = buffer if unbuffered and fd else buffer.raw  # type: ignore[attr-defined]
        line = not unbuffered and (fd == 2 or raw.isatty())
        raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]  # type: ignore[misc]
        stream = io.TextIOWrapper(buffer, encoding=old.encoding, errors=old.errors,
                                  newline="\n", line_buffering=line, write_through=unbuffered)
        stream.mode = mode[0]  # type: ignore[misc]
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]


def main() -> None:
    """`python -c BOOT DIRECTORY KEY` (see the module's docstring)."""
    directory, key = sys.argv[1], sys.argv[2]
    base = f"{directory}/{key}"
    lock = os.open(f"{base}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for the server's lifetime
    except OSError:
        return  # another server of this fingerprint runs, or is starting
    listener = None
    try:  # whatever fails here is said in KEY.refused (tried again after an hour)
        server = _Server(directory, key, lock)
        reason = server.prepare()
        if reason is None and client.key_of(server.print_) != key:  # the client's sys.path
            reason = "this interpreter's sys.path or flags differ from the client's"
        if reason is None:
            import setproctitle

            setproctitle.setproctitle(f"{TITLE} {key} (MLBUILD_SERVER=0: commands without it)")
            listener = server.listen()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        Path(f"{base}.spawned").unlink(missing_ok=True)
    if listener is None:
        Path(f"{base}.refused").write_text(f"{reason}\n")
        return
    become(server.serve(listener))
