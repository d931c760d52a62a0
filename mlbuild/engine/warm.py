"""Warm starts for hermetic Python stages.

A stage command `python -m module ...` or `python script.py ...` spends most of its seconds
importing pandas, scikit-learn or LightGBM before doing any work. A warm interpreter
(mlbuild/sandbox/hook/_mlbuild_warm.py), started with the stages' fixed environment, imports
the installed packages the stages' code imports, once, and forks each such command from
there: the child takes the stage's variables, directory, arguments, output files and process
group and runs as a fresh interpreter would. Everything else starts the usual way (a shell
command, a stage that is not hermetic, a directory that would shadow a package imported
ahead), and so does every stage when MLBUILD_WARM=0.

One pool per build, shut down when the build ends; an experiment sweep shares one pool with
all its variants (MLBUILD_WARM_SHARE names it), so each package is imported once per sweep.
A pool holds one warm interpreter per stage environment and list of modules to import
ahead: variants whose group choices pick different packages get one each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from mlbuild.config.closure import code_deps, imported_modules
from mlbuild.pipeline.model import Stage
from mlbuild.sandbox.findings import python_only

SWITCH = "MLBUILD_WARM"  # "0": every stage starts cold
SHARE = "MLBUILD_WARM_SHARE"  # "<directory>:<owner pid>" of a sweep's pool
# What differs from one stage to the next: set in each child, not part of the key.
PER_STAGE = frozenset({
    "DVC_STAGE", "DVC_ROOT", "MLBUILD_ROOT", "MLBUILD_TRACE_DIR", "MLBUILD_GUARD",
    "MLBUILD_ALLOW_NETWORK", "MLBUILD_NETWORK", "MLBUILD_SEED", "HOME", "TMPDIR",
    "PYTHONPYCACHEPREFIX", "PATH"})
STAGE_API = ("yaml", "omegaconf")  # what mlbuild.stage_params() imports
READY_TIMEOUT = 10.0  # seconds a new warm interpreter gets to listen
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes
MODULE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*")
LAUNCH = "import sys; s = set(sys.modules); import _mlbuild_warm; _mlbuild_warm.main(s)"


def program(cmd: str) -> list[str] | None:
    """The interpreter arguments of a plain `python -m module ...` or `python x.py ...`."""
    if not python_only([cmd]):
        return None
    words = shlex.split(cmd)
    if len(words) >= 3 and words[1] == "-m" and MODULE.fullmatch(words[2]):
        return words[1:]
    if len(words) >= 2 and words[1].endswith(".py") and not words[1].startswith("-"):
        return words[1:]
    return None


def environment_key(env: dict[str, str], modules: list[str]) -> str:
    """The identity of a warm interpreter: the environment it must have been started with
    and the modules it imports ahead."""
    fixed = sorted((k, v) for k, v in env.items() if k not in PER_STAGE)
    return hashlib.sha256(json.dumps([fixed, sorted(modules)]).encode()).hexdigest()[:20]


def preload(root: Path, stages: Iterable[Stage]) -> list[str]:
    """Installed modules the stages' Python code imports, the most shared first (never a
    module the project itself provides)."""
    own = {p.name.split(".")[0] for p in _listing(root)}
    counts: Counter[str] = Counter()
    for stage in stages:
        for cmd in stage.cmd:
            if program(cmd) is None:
                continue
            names = imported_modules(code_deps(root, cmd, root / stage.wdir))
            if "mlbuild" in {n.split(".")[0] for n in names}:
                names |= set(STAGE_API)
            counts.update(n for n in names if n.split(".")[0] not in own)
    return sorted(counts, key=lambda n: (-counts[n], n))


def _listing(root: Path) -> list[Path]:
    try:
        return list(root.iterdir())
    except OSError:
        return []


def _as_shell(env: dict[str, str]) -> dict[str, str]:
    """The environment the stage's shell would hand the interpreter: bash and zsh count
    SHLVL up and export `_`, the program's path (every shell exports PWD: set in the child)."""
    shell = Path(os.environ.get("SHELL") or "/bin/sh").name
    if shell not in ("bash", "zsh"):
        return env
    level = env.get("SHLVL", "0")
    found = shutil.which("python", path=env.get("PATH"))
    return {**env, "SHLVL": str(int(level) + 1 if level.isdigit() else 1),
            **({"_": found} if found else {})}


class WarmProc:
    """A stage process forked by a warm interpreter, waited on like a Popen."""

    def __init__(self, pid: int, conn: socket.socket, reader: IO[bytes]) -> None:
        self.pid = pid
        self._conn = conn
        self._reader = reader
        self.returncode: int | None = None

    def wait(self) -> int:
        """The exit status (negative: the signal); a warm interpreter that died kills it."""
        if self.returncode is None:
            line = self._reader.readline().decode(errors="replace").split()
            self._reader.close()
            self._conn.close()
            if len(line) == 2 and line[0] == "exit":
                self.returncode = int(line[1])
            else:  # its parent is gone, and with it the status: make sure it is gone too
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
                self.returncode = -signal.SIGKILL
        return self.returncode


class WarmPool:
    """The warm interpreters of one build (or of one sweep), one per stage environment."""

    def __init__(self, root: Path, modules: list[str], directory: Path, owner: int,
                 owned: bool) -> None:
        self.root = root
        self.modules = modules
        self.directory = directory
        self.owner = owner
        self.owned = owned  # this process started the pool and shuts it down
        self._lock = threading.Lock()
        self._servers: dict[str, Path | None] = {}
        self._started: list[subprocess.Popen[bytes]] = []

    @classmethod
    def create(cls, root: Path, modules: list[str]) -> WarmPool | None:
        """A pool for this process's builds (the sweep's, when MLBUILD_WARM_SHARE names
        one), or None when warm starts are off or there is nothing to import ahead."""
        if os.environ.get(SWITCH) == "0" or not modules or not hasattr(os, "pidfd_open"):
            return None
        where, _, owner = os.environ.get(SHARE, "").rpartition(":")
        if where and owner.isdigit() and Path(where).is_dir():
            return cls(root, modules, Path(where), int(owner), owned=False)
        directory = _new_directory()
        return None if directory is None else cls(root, modules, directory, os.getpid(),
                                                   owned=True)

    def share(self) -> str:
        """The MLBUILD_WARM_SHARE value that lets child processes' builds use this pool."""
        return f"{self.directory}:{self.owner}"

    def start(self, argv: list[str], cwd: Path, env: dict[str, str], out: IO[bytes],
              err: IO[bytes], pgid: int | None) -> WarmProc | None:
        """Fork the command from the warm interpreter for *env*; None: start it cold."""
        if env.get("MLBUILD_HERMETIC") != "1":
            return None
        key = environment_key(env, self.modules)
        path = self._server(key, env)
        if path is None:
            return None
        request = json.dumps({"key": key, "argv": argv, "cwd": str(cwd), "env": _as_shell(env),
                              "pgid": pgid}).encode()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(path))
            socket.send_fds(conn, [struct.pack("!I", len(request))],
                            [out.fileno(), err.fileno()])
            conn.sendall(request)
            reader = conn.makefile("rb")
            reply = reader.readline().decode(errors="replace").split()
        except OSError:
            conn.close()
            return None
        if len(reply) == 2 and reply[0] == "pid":
            return WarmProc(int(reply[1]), conn, reader)
        reader.close()
        conn.close()
        return None

    def prestart(self, env: dict[str, str]) -> None:
        """Start the warm interpreter for *env* now, so that it imports while the build
        plans and checks its inputs."""
        self._server(environment_key(env, self.modules), env)

    def _server(self, key: str, env: dict[str, str]) -> Path | None:
        """The socket of the warm interpreter for *key*, started if need be."""
        with self._lock:
            if key not in self._servers:
                self._servers[key] = self._launch(key, env)
            return self._servers[key]

    def _launch(self, key: str, env: dict[str, str]) -> Path | None:
        sock = self.directory / f"{key}.sock"
        with _exclusive(self.directory / f"{key}.lock"):  # a sweep's builds start it once
            if sock.exists():
                return sock
            modules = self.directory / f"{key}.json"
            modules.write_text(json.dumps(self.modules), encoding="utf-8")
            fixed = {k: v for k, v in env.items() if k not in PER_STAGE}
            fixed.update({k: env[k] for k in ("DVC_ROOT", "HOME", "PATH") if k in env})
            with open(self.directory / f"{key}.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-c", LAUNCH, str(sock), str(self.owner), key,
                     str(modules)], env=fixed, cwd=self.root, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=log, process_group=0)
            self._started.append(proc)
            (self.directory / f"{key}.pid").write_text(f"{proc.pid}\n", encoding="utf-8")
            deadline = time.monotonic() + READY_TIMEOUT
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    return None
                time.sleep(0.005)
            return sock

    def close(self) -> None:
        """Stop the warm interpreters this pool started (all of them, when it owns them)."""
        if not self.owned:
            return
        for pidfile in self.directory.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        for proc in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(path: Path):  # type: ignore[no-untyped-def]
    import fcntl

    with open(path, "a+b") as fobj:
        fcntl.flock(fobj, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fobj, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared_pool() -> Iterator[None]:
    """A pool that builds in child processes started meanwhile use (MLBUILD_WARM_SHARE), shut
    down at the end: an experiment sweep imports each package once, not once per variant."""
    if os.environ.get(SWITCH) == "0" or SHARE in os.environ or not hasattr(os, "pidfd_open"):
        yield
        return
    directory = _new_directory()
    if directory is None:
        yield
        return
    pool = WarmPool(Path.cwd(), [], directory, os.getpid(), owned=True)
    os.environ[SHARE] = pool.share()
    try:
        yield
    finally:
        del os.environ[SHARE]
        pool.close()


def _new_directory() -> Path | None:
    """A private directory for the pool's sockets: in TMPDIR, or in /tmp when TMPDIR's path
    is too long for a socket's (None if both are)."""
    for base in (None, "/tmp"):  # a private directory either way (mkdtemp: mode 0700)
        directory = Path(tempfile.mkdtemp(prefix="mlbuild-warm-", dir=base))
        if len(str(directory)) <= MAX_SOCKET_PATH - 30:
            return directory
        directory.rmdir()
    return None
