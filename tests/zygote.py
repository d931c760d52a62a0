"""Real CLI processes without paying the interpreter's start-up in each: a pre-started
interpreter (a "zygote", as Android and Chromium call theirs) that has imported a tool's
start-up modules forks one new process per command.

Each command still runs in a process of its own, with its own working directory,
environment, argv, standard streams (the caller's files, passed over a Unix socket) and exit
status (read with waitpid, a signal's death included), through the tool's real `__main__`
exactly as `python -m TOOL` runs it. What is shared is only what the interpreter and the
imports did before the first command: about 0.1 CPU-second of mlbuild's start-up and 0.5 of
DVC's, over a thousand times in the suite.

What a forked process cannot reproduce is left to `python -m` in a new interpreter (the
client falls back to it by itself): a different PYTHONPATH or other interpreter settings,
another locale, and any variable in the environment that differs at the zygote's start
where a preloaded module reads it at import (see NEEDS_NEW_INTERPRETER). Every process of the
suite shares the zygote's string-hash seed; the tests that check start-up itself (imports
with -X importtime, signals, the console script) start their own interpreters.

Run as `python zygote.py SOCKET TOOL MODULE...` by `Zygote` below.
"""

from __future__ import annotations

import atexit
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
import traceback
from pathlib import Path
from typing import IO

# start-up settings the interpreter fixes before any command (sys.path, sys.flags, the
# streams' encoding): a command whose environment differs in these gets a new interpreter
NEEDS_NEW_INTERPRETER = ("PYTHON", "LANG", "LC_", "LANGUAGE")


def _recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """One request: a length-prefixed JSON body and the three standard streams' fds."""
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    (size,) = struct.unpack("!I", head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise EOFError
        body += chunk
    return json.loads(body), fds


def _become(tool: str, request: dict[str, object], fds: list[int]) -> None:
    """In the forked child: take the caller's streams, directory, environment and argv, and
    run the tool's `__main__` the way `python -m` does; never returns."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    cwd = str(request["cwd"])
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[call-overload]
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path[0] = cwd  # `python -m` puts the working directory first
    sys.argv = [tool, *request["argv"]]  # type: ignore[misc]
    code: object = 0
    try:
        import runpy

        runpy.run_module(tool, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
    except KeyboardInterrupt:
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # as the interpreter does: a traceback and status 1
        traceback.print_exc()
        code = 1
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _finish()
    os._exit(code or 0)


def _finish() -> None:
    """What the interpreter does at exit before freeing objects: wait for non-daemon threads,
    run the exit handlers, flush the streams."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _answer(conn: socket.socket, tool: str, request: dict[str, object], fds: list[int]) -> None:
    """In a forked monitor: fork the command, tell the caller its pid, then its status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _become(tool, request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(0)


def serve(path: str, tool: str, modules: list[str]) -> None:
    """Import the modules, then fork a monitor per request until the caller goes."""
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if len(list(Path("/proc/self/task").iterdir())) > 1:  # an import started a thread
        print("threads", flush=True)
        return
    gc.collect()
    gc.freeze()  # the imported objects stay shared with every fork
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
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
            _answer(conn, tool, request, fds)
        conn.close()
        for fd in fds:
            os.close(fd)


class Zygote:
    """The client: one server per tool and test process, started on first use."""

    def __init__(self, tool: str, modules: tuple[str, ...], env: dict[str, str]) -> None:
        self.tool, self.modules, self.env = tool, modules, env
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._dir = ""
        self._ready = False

    def _socket(self) -> str:
        with self._lock:
            if self._proc is None:
                self._dir = tempfile.mkdtemp(prefix=f"zygote-{self.tool}-")
                path = str(Path(self._dir, "s"))
                self._proc = subprocess.Popen(
                    [sys.executable, __file__, path, self.tool, *self.modules],
                    env=self.env, cwd=self._dir, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True)
                assert self._proc.stdout is not None
                self._ready = self._proc.stdout.readline().strip() == "ready"
                atexit.register(self.close)
            return str(Path(self._dir, "s")) if self._ready else ""

    def close(self) -> None:
        """Stop the server (the commands it forked are not its children to wait for)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._dir:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)

    def usable(self, env: dict[str, str]) -> bool:
        """Whether a forked process can run under *env* as a new interpreter would (and the
        zygote could start: it refuses when an import started a thread)."""
        if not self._socket():
            return False
        keys = set(env) | set(self.env)
        return not any(k.startswith(NEEDS_NEW_INTERPRETER) and env.get(k) != self.env.get(k)
                       for k in keys)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess[str]:
        """Like subprocess.run(python -m TOOL ARGV, capture_output=True, text=True)."""
        cmd = [sys.executable, "-m", self.tool, *argv]
        body = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode()
        with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self._socket())
            socket.send_fds(conn, [struct.pack("!I", len(body))],
                            [stdin.fileno(), out.fileno(), err.fileno()])
            conn.sendall(body)
            conn.settimeout(timeout)
            pid = int(_line(conn))
            try:
                line = _line(conn)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                conn.settimeout(None)
                _line(conn)  # its monitor saw it end
                raise subprocess.TimeoutExpired(cmd, timeout, _read(out), _read(err)) from None
            return subprocess.CompletedProcess(cmd, int(line), _read(out), _read(err))


def _line(conn: socket.socket) -> bytes:
    """One newline-ended answer from a monitor (a pid or an exit status)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise RuntimeError("a zygote's monitor ended without an answer")
        data += chunk
    return data


def _read(handle: IO[bytes]) -> str:
    """What text=True gives: decoded, universal newlines."""
    handle.seek(0)
    return handle.read().decode().replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3:])
