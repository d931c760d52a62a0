"""Real CLI processes without paying the interpreter's start-up in each: a pre-started
interpreter (a "zygote", as Android and Chromium call theirs) that has imported a tool's
start-up modules forks one new process per command.

Each command still runs in a process of its own, with its own working directory,
environment, argv, standard streams (the caller's files, passed over a Unix socket) and exit
status (read with waitpid, a signal's death included), through the tool's real `__main__`
exactly as `python -m TOOL` runs it, and it leaves through the interpreter's own exit
(threads joined, `atexit` run, streams flushed, an uncaught exception shown by
`sys.excepthook`). What is shared is only what the interpreter and the imports did before
the first command: about 0.1 CPU-second of mlbuild's start-up and 0.5 of DVC's, over a
thousand times in the suite.

What a forked process cannot reproduce is left to `python -m` in a new interpreter (the
client falls back to it by itself): an environment that differs from the zygote's in a
variable the interpreter or an import read (PYTHON*, the locale, and every variable a module
looked up while the zygote imported it: FORCE_COLOR for Typer, for instance); a working
directory holding a module named like one imported ahead (`typer.py` beside the project);
a zygote that is gone. What its imports set in the environment (scikit-learn's KMP_*) is set
in every command's, as in a new interpreter that imports the same. What stays different:
every command forked from one zygote shares its string-hash seed, `/proc/PID/cmdline` is the
zygote's, objects imported ahead are frozen for the garbage collector, a submodule imported
ahead is already an attribute of its package, and a command that does not import what the
zygote imported still has the variables those imports set.
The tests that check start-up itself (imports with -X importtime, signals, the console
script) start their own interpreters.

Run as `python zygote.py SOCKET TOOL MODULE...` by `Zygote` below.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import IO, Any

# the recording of environment reads is the resident server's (mlbuild/launch/envreads.py)
from mlbuild.launch.envreads import SCANNED, SCANS, recording

# settings the interpreter fixes at start-up (sys.path, sys.flags, the streams' encoding)
STARTUP_VARIABLES: tuple[str, ...] = ("PYTHON", "LANG", "LC_", "LANGUAGE")
PREFIX = "prefix:"  # a recorded read of every variable starting with what follows
REQUEST_TIMEOUT = 60.0  # seconds a client gets to send its request, the zygote to answer


class UnavailableError(Exception):
    """The zygote could not start the command: start a new interpreter instead."""


def _recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: a length-prefixed JSON body and the three standard streams' fds."""
    conn.settimeout(REQUEST_TIMEOUT)
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    try:
        (size,) = struct.unpack("!I", head)
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise EOFError
            body += chunk
        request = json.loads(body)
        if len(fds) != 3:
            raise ValueError("three standard streams expected")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.settimeout(None)
    return request, fds


# what the imports set in the environment: {variable: (its value before, after)}
_SET_AT_IMPORT: dict[str, tuple[str | None, str]] = {}


def _become(tool: str, request: dict[str, Any], fds: list[int],
            filters: list[Any]) -> None:
    """In the forked child: take the caller's streams, directory, environment and argv, and
    run the tool's `__main__` the way `python -m` does. It returns or raises into the
    interpreter's own exit (see `main`)."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    cwd = str(request["cwd"])
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])
    for key, (before, after) in _SET_AT_IMPORT.items():
        if os.environ.get(key) == before:  # the imports would have set it here too
            os.environ[key] = after
    importlib.invalidate_caches()  # a new interpreter has no directory listings cached
    time.tzset()  # TZ: the caller's
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None  # TMPDIR: the caller's
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # a new interpreter seeds it from the OS (random re-seeds)
        numpy_random.seed()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    warnings.filters[:] = filters  # type: ignore[index]  # as before the imports (kfp's)
    sys.path[0] = cwd  # `python -m` puts the working directory first
    sys.argv = [tool, *request["argv"]]
    sys.orig_argv = [sys.executable, "-m", tool, *request["argv"]]
    import runpy

    runpy.run_module(tool, run_name="__main__", alter_sys=True)


def _answer(conn: socket.socket, tool: str, request: dict[str, Any], fds: list[int],
            filters: list[Any]) -> None:
    """In a forked monitor: fork the command, tell the caller its pid, then its status. The
    command is killed when the caller asks (a timeout) or goes away."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _become(tool, request, fds, filters)
        raise SystemExit(0)  # the module ran to its end, as `python -m` ends then
    for fd in fds:
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the monitor outlives nothing it watches
    try:
        with contextlib.suppress(OSError):
            conn.sendall(f"{pid}\n".encode())
        pidfd = os.pidfd_open(pid)
        watching: list[Any] = [conn, pidfd]
        while pidfd not in select.select(watching, [], [])[0]:
            with contextlib.suppress(OSError):  # a byte (kill) or the end (the caller is gone)
                conn.recv(1)
            os.kill(pid, signal.SIGKILL)  # not reaped yet: still this command
            watching = [pidfd]
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    except BaseException:  # never the tool's exit handlers here, never an orphan command
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    finally:
        os._exit(0)


STARTUP_VARIABLES += (*SCANNED, "HOME")  # fsspec's config and dulwich find ~ with HOME
# Modules whose import scans the whole environment for settings with a prefix, and the file
# that scans: GTO's CONFIG, with pydantic-settings (case-insensitive). Only the variables
# with that prefix matter.
PREFIX_SCANS = {"gto": ("pydantic_settings/sources/utils.py", "gto_")}
# Files a module reads from the working directory when imported (as mlbuild's warm
# interpreter knows them): a command in a directory holding one would not see it.
READ_AT_IMPORT = {"matplotlib": ("matplotlibrc",)}
# Threads an import may start that a fork re-creates: jemalloc's background thread (pyarrow's
# allocator, started when pandas is imported), as mlbuild's own warm interpreter allows
# (mlbuild/sandbox/hook/_mlbuild_warm.py FORK_SAFE_THREADS).
FORK_SAFE_THREADS = ("jemalloc_bg_thd",)


def _threads() -> int:
    """This process's threads, less those a fork re-creates."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            names.append((task / "comm").read_text().strip())
    return sum(name not in FORK_SAFE_THREADS for name in names)
# the terminal and colour settings Typer's and rich's output follow: a new interpreter too
# what C libraries read with getenv when they load (OpenBLAS, GNU OpenMP, Arrow, glibc's
# malloc); not KMP_ (Intel's OpenMP, which nothing here loads): scikit-learn sets two of
# those in the test process itself when a test imports it
STARTUP_VARIABLES += ("OMP_", "GOMP_", "OPENBLAS_", "GOTO_", "MKL_", "NUMEXPR_", "BLIS_",
                      "VECLIB_", "ARROW_", "MALLOC_")
STARTUP_VARIABLES += ("FORCE_COLOR", "NO_COLOR", "PY_COLORS", "TTY_", "GITHUB_ACTIONS",
                      "TERMINAL_WIDTH", "_TYPER_", "COLUMNS", "LINES", "TERM", "COLORTERM")


def serve(path: str, tool: str, modules: list[str]) -> None:
    """Import the modules, then fork a monitor per request until the caller goes."""
    filters = list(warnings.filters)
    before = dict(os.environ)
    read: set[str] = set()
    for name in modules:
        scanner, prefix = PREFIX_SCANS.get(name.partition(".")[0], ("", ""))
        scans = {**SCANS, scanner: prefix} if scanner else SCANS
        with recording(read, scans), contextlib.suppress(ImportError):
            importlib.import_module(name)
        if scanner:
            read.add(PREFIX + prefix)
    if _threads() > 1:  # an import started a thread
        print(json.dumps({"refused": "an import started a thread"}), flush=True)
        os._exit(0)
    gc.collect()
    gc.freeze()  # the imported objects stay shared with every fork
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    names = sorted({name.partition(".")[0] for name in sys.modules})
    # what the imports set themselves (scikit-learn's os.environ.setdefault of KMP_*): a
    # command whose environment already has those values (its caller imported them too)
    # would have seen the same
    set_here = {k: v for k, v in os.environ.items() if before.get(k) != v}
    _SET_AT_IMPORT.update({k: (before.get(k), v) for k, v in set_here.items()})
    print(json.dumps({"read": sorted(read), "modules": names, "set": set_here}), flush=True)
    while True:
        # the caller's end of stdin closes when it exits, however it ends: so does this
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable:
            os._exit(0)
        conn, _ = listener.accept()
        try:
            request, fds = _recv_request(conn)
        except (EOFError, OSError, ValueError, struct.error):
            conn.close()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            _answer(conn, tool, request, fds, filters)
        conn.close()
        for fd in fds:
            os.close(fd)


class Zygote:
    """The client: one server per tool and test process, started on first use."""

    def __init__(self, tool: str, modules: tuple[str, ...], env: dict[str, str],
                 pinned: dict[str, str] | None = None) -> None:
        """*pinned*: variables set for the zygote's imports only, whatever a command's
        environment says (a command still sees its own value in os.environ)."""
        self.tool, self.modules, self.env = tool, modules, env
        self.pinned = dict(pinned or {})
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._dir = ""
        self._read: set[str] = set()
        self._names: set[str] = set()
        self._set: dict[str, str] = {}
        self._ready = False

    def _socket(self) -> str:
        """The listening socket's path, the zygote started if need be ("" if it refused or
        is gone)."""
        with self._lock:
            if self._proc is None:
                self._dir = tempfile.mkdtemp(prefix=f"zygote-{self.tool}-")
                path = str(Path(self._dir, "s"))
                self._proc = subprocess.Popen(
                    [sys.executable, __file__, path, self.tool, *self.modules],
                    env={**self.env, **self.pinned}, cwd=self._dir, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True)
                import atexit

                atexit.register(self.close)
                assert self._proc.stdout is not None
                with contextlib.suppress(ValueError, KeyError, TypeError):  # refused, or died
                    said = json.loads(self._proc.stdout.readline() or "{}")
                    self._read, self._names = set(said["read"]), set(said["modules"])
                    self._set = dict(said["set"])
                    self._ready = True
            if not self._ready or self._proc.poll() is not None:
                return ""
            return str(Path(self._dir, "s"))

    def close(self) -> None:
        """Stop the server (the commands it forked are not its children to wait for)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._dir:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)

    def usable(self, env: dict[str, str], cwd: Path | None = None) -> bool:
        """Whether a process forked here runs under *env* in *cwd* as it would in a new
        interpreter (see the module's docstring)."""
        if not self._socket() or "*" in self._read:
            return False
        keys = (set(env) | set(self.env)) - set(self.pinned)
        prefixes = tuple(r.removeprefix(PREFIX) for r in self._read if r.startswith(PREFIX))
        if any((k.startswith(STARTUP_VARIABLES) or k in self._read
                or k.lower().startswith(prefixes))
               and env.get(k) not in (self.env.get(k), self._set.get(k, self.env.get(k)))
               for k in keys):
            return False
        return cwd is None or not (_shadows(cwd) & self._names or any(
            (cwd / name).exists() for module, files in READ_AT_IMPORT.items()
            if module in self._names for name in files))

    def start(self, argv: list[str], cwd: Path, env: dict[str, str]) -> Started:
        """Like subprocess.Popen(python -m TOOL ARGV, stdout=PIPE, stderr=PIPE, text=True);
        UnavailableError when the zygote cannot be reached (nothing was started)."""
        body = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                conn.connect(self._socket())
            except OSError as exc:
                raise UnavailableError(str(exc)) from exc
            with open(os.devnull, "rb") as stdin:
                socket.send_fds(conn, [struct.pack("!I", len(body))],
                                [stdin.fileno(), out_w, err_w])
            conn.sendall(body)
            started = Started([sys.executable, "-m", self.tool, *argv], conn, out_r, err_r)
        except BaseException:
            conn.close()
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        conn.settimeout(None)
        return started

    def run(self, argv: list[str], cwd: Path, env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess[str]:
        """Like subprocess.run(python -m TOOL ARGV, capture_output=True, text=True);
        UnavailableError when the zygote cannot be reached (nothing was started)."""
        cmd = [sys.executable, "-m", self.tool, *argv]
        body = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode()
        with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                conn.connect(self._socket())
            except OSError as exc:  # nothing was asked: a new interpreter may run it
                raise UnavailableError(str(exc)) from exc
            socket.send_fds(conn, [struct.pack("!I", len(body))],
                            [stdin.fileno(), out.fileno(), err.fileno()])
            conn.sendall(body)
            int(_line(conn))  # its pid: it has started (once asked, never run it twice)
            conn.settimeout(timeout)
            try:
                line = _line(conn)
            except TimeoutError:
                conn.settimeout(None)
                with contextlib.suppress(OSError):  # it may have ended meanwhile
                    conn.sendall(b"k")  # its monitor kills it, before reaping it
                _line(conn)
                raise subprocess.TimeoutExpired(cmd, timeout, _read(out), _read(err)) from None
            return subprocess.CompletedProcess(cmd, int(line), _read(out), _read(err))


class Started:
    """A command forked by a zygote and left running, used as a subprocess.Popen started
    with stdout and stderr piped, text=True: args, pid, stdout, stderr, poll, wait,
    communicate, send_signal, terminate, kill, returncode. Its exit status comes from its
    monitor, which kills it when this end goes away."""

    def __init__(self, args: list[str], conn: socket.socket, out: int, err: int) -> None:
        self.args, self._conn = args, conn
        self.pid = int(_line(conn))
        self.stdout: IO[str] = open(out, encoding="utf-8")  # noqa: SIM115 (closed at the end)
        self.stderr: IO[str] = open(err, encoding="utf-8")  # noqa: SIM115
        self.returncode: int | None = None
        self._readers: list[threading.Thread] = []
        self._output: dict[int, str] = {}

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._ended()
        return self.returncode

    def _ended(self) -> None:
        self.returncode = int(_line(self._conn))
        self._conn.close()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; subprocess.TimeoutExpired past *timeout* seconds."""
        if self.returncode is None:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._ended()
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Everything it writes to stdout and stderr until it ends, and the end."""
        if not self._readers:
            for index, stream in enumerate((self.stdout, self.stderr)):
                def read(index: int = index, stream: IO[str] = stream) -> None:
                    self._output[index] = stream.read()
                self._readers.append(threading.Thread(target=read, daemon=True))
                self._readers[-1].start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.stdout.close()
        self.stderr.close()
        return self._output[0], self._output[1]

    def send_signal(self, signum: int) -> None:
        """Signal it, unless it has ended (reaped, its status not yet told: as Popen)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


def _shadows(cwd: Path) -> set[str]:
    """Top-level module names the directory provides (`python -m` puts it first on the
    path): NAME.py and NAME/__init__.py."""
    try:
        return {p.stem if p.suffix == ".py" else p.name for p in cwd.iterdir()
                if p.suffix == ".py" or (p / "__init__.py").exists()}
    except OSError:
        return set()


def _line(conn: socket.socket) -> bytes:
    """One newline-ended answer from a monitor (a pid or an exit status)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise EOFError("a zygote's monitor ended without an answer")
        data += chunk
    return data


def _read(handle: IO[bytes]) -> str:
    """What text=True gives: decoded, universal newlines."""
    handle.seek(0)
    return handle.read().decode().replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3:])
