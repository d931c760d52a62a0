"""A warm interpreter for hermetic Python stages: it imports the stages' installed packages
once, then forks one child per `python -m module ...` or `python script.py ...` command, which
runs exactly as that command would in a fresh interpreter started with the same environment.

Started by mlbuild/engine/warm.py with the stages' fixed environment (everything a stage gets
except the per-stage variables), so what the interpreter reads at start-up (PYTHONHASHSEED,
the thread counts, PYTHONPATH, the locale) is the stage's own. Each child takes the stage's
variables, working directory, arguments, output files and process group, installs the audit
hook (sitecustomize.activate), and leaves as the interpreter would (non-daemon threads joined,
atexit run, streams flushed). The parent tells the client the child's pid, then its exit
status. Only installed code is imported ahead (never the project's), and a child is refused
(the client then starts the command the usual way) when its directory would shadow a package
imported ahead. Standard library only: this file loads into the stages' interpreter.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys

from _mlbuild_warmchild import child  # type: ignore[import-not-found]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct("!I")  # the length of a request's JSON
MAX_REQUEST = 1 << 22
# Files a package reads from the working directory when it is imported: a child whose
# directory holds one (unlike the warm interpreter's) would not see it.
READ_AT_IMPORT = {"matplotlib": ("matplotlibrc",)}
FORK_SAFE_THREADS = frozenset((b"jemalloc_bg_thd",))
# What a package may not do while imported ahead, outside the stage's audit hook: it is then
# not imported ahead, and the stage imports it under its own hook, which judges it.
UNSEEN_AT_IMPORT = frozenset((
    "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
    "socket.sendto", "socket.sendmsg", "subprocess.Popen", "os.system", "os.exec",
    "os.posix_spawn", "os.fork", "os.forkpty"))


class Server:
    """The warm interpreter's loop: requests in, children forked, exit statuses out."""

    def __init__(self, listener: socket.socket, key: str, owner: int,
                 startup: set[str]) -> None:
        self.listener = listener
        self.key = key
        self.owner = owner  # a pidfd: readable once mlbuild, our owner, has ended
        self.children: dict[int, socket.socket] = {}
        self.startup = startup  # what a fresh interpreter has imported too
        self.home = os.getcwd()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        self.running = True
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "child")
        self.selector.register(owner, selectors.EVENT_READ, "owner")

    def _stop(self, *_: object) -> None:
        self.running = False

    def preload(self, modules: list[str]) -> None:
        """Import *modules* one by one; requests wait (a child forked half-way would import
        the rest again, beside us, on the same cores)."""
        import importlib

        from sitecustomize import _LIBC_UNSEEN  # type: ignore[import-not-found]

        importing = [True]

        def refuse(event: str, args: tuple[object, ...]) -> None:
            if importing[0] and (event in UNSEEN_AT_IMPORT or (
                    event == "ctypes.dlsym" and args[1] in _LIBC_UNSEEN)):
                raise PermissionError(f"mlbuild: {event} while importing ahead")

        sys.addaudithook(refuse)  # stays, but does nothing once the imports are done
        for name in modules:
            if not self.running:
                break
            try:
                importlib.import_module(name)
            except BaseException:  # it fails in the stage as it would here
                continue
        importing[0] = False

    def serve(self, timeout: float | None) -> None:
        """Handle what is ready within *timeout* seconds (None: wait)."""
        for ready, _ in self.selector.select(timeout):
            if ready.data == "accept":
                self.accept()
            elif ready.data == "child":
                self.reap()
            else:
                self.running = False

    def loop(self) -> None:
        """Serve until mlbuild ends or says stop."""
        while self.running:
            self.serve(None)

    def accept(self) -> None:
        """Take one request: refuse it, or fork its child and send the child's pid."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(30)
        try:
            req, fds = _receive(conn)
        except (OSError, ValueError):
            conn.close()
            return
        why = self.refusal(req, conn)
        if why:
            _send(conn, f"refuse {why}")
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            child(req, fds, [self.listener.fileno(), self.owner, self.wake_r,
                             *(c.fileno() for c in self.children.values())], conn)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        _send(conn, f"pid {pid}")

    def refusal(self, req: dict[str, Any], conn: socket.socket) -> str:
        """Why this warm interpreter cannot run the request as a fresh one would ('' if it can)."""
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  struct.calcsize("3i")))[1]
        if uid != os.getuid():
            return "another user"
        if req.get("key") != self.key:
            return "another environment"
        if _threads() > 1:  # a fork would leave those threads behind
            return "a package started a thread when imported"
        pgid = req.get("pgid")
        if pgid is not None and _session(pgid) != os.getsid(0):
            return "another session"
        return self.differs(req["cwd"], req["argv"])

    def differs(self, cwd: str, argv: list[str]) -> str:
        """What in the stage's directory a fresh interpreter would see and this one would not:
        a module named like one imported ahead, or a file a package reads at import."""
        first = cwd if argv[0] == "-m" else os.path.dirname(
            os.path.realpath(os.path.join(cwd, argv[0])))
        ahead = {m.split(".")[0] for m in sys.modules if m not in self.startup}
        try:
            present = {entry.split(".")[0] for entry in os.listdir(first)}
        except OSError:
            return "an unreadable directory"
        if shadowed := sorted(ahead & present):  # the directory first on sys.path wins
            return f"'{shadowed[0]}' in the stage's directory"
        for top, names in READ_AT_IMPORT.items():
            for name in names if top in ahead else ():
                if _read(os.path.join(cwd, name)) != _read(os.path.join(self.home, name)):
                    return f"its own {name}"
        return ""

    def reap(self) -> None:
        """Send each ended child's exit status to its client."""
        while True:
            try:
                os.read(self.wake_r, 512)
            except BlockingIOError:
                break
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    _send(conn, f"exit {os.waitstatus_to_exitcode(status)}")
                except OSError:
                    pass
                conn.close()


def _threads() -> int:
    """This process's threads, less those known to survive a fork: jemalloc's background
    thread (pyarrow's allocator, started when pandas is imported) is re-created in a child."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        name = _read(f"/proc/self/task/{task}/comm")
        if name is None or name.strip() not in FORK_SAFE_THREADS:
            count += 1
    return count


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fobj:
            return fobj.read()
    except OSError:
        return None


def _session(pgid: int) -> int:
    try:
        return os.getsid(pgid)
    except OSError:
        return -1


def _send(conn: socket.socket, line: str) -> None:
    conn.sendall(line.encode() + b"\n")


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: its length, then its JSON, with the stage's stdout and stderr attached."""
    head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 2)
    if len(head) != HEADER.size:
        raise ValueError("short request")
    size = HEADER.unpack(head)[0]
    if size > MAX_REQUEST or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise ValueError("bad request")
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("short request")
        body += chunk
    return json.loads(body), fds


def main(startup: set[str]) -> None:
    """Entry point: argv is the socket path, the owner's pid, the key, the modules file;
    *startup* the modules imported before this one (as in any interpreter)."""
    path, owner_pid, key, modules_file = sys.argv[1:5]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is mlbuild's to handle
    try:
        owner = os.pidfd_open(int(owner_pid))
    except OSError:
        return  # mlbuild has already gone
    if sys.path and sys.path[0] == "":  # import installed code ahead, never the project's
        del sys.path[0]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # clients never connect to a half-ready socket
    with open(modules_file, encoding="utf-8") as fobj:
        modules = json.load(fobj)
    server = Server(listener, key, owner, startup)
    try:
        server.preload(modules)
        server.loop()
    finally:
        base = path[: -len(".sock")]
        for suffix in (".sock", ".pid", ".json", ".lock"):
            try:
                os.unlink(base + suffix)
            except OSError:
                pass
