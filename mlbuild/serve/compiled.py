"""LightGBM trees compiled to machine code for the server's prediction path, by lleaves (which
JIT-compiles a LightGBM model with llvmlite: no C compiler at run time). The one owner of that
optional dependency (`pip install mlbuild[serve-compiled]`): imported lazily, and its absence
is only a slower path, never an error.

Compiling the example's 600 trees takes seconds, so it runs in a child process started when a
model is loaded (a crash or a hang there cannot touch the server, which answers through
LightGBM meanwhile), and its object code is cached in the project's state directory under a
key made of the booster's text, lleaves' and llvmlite's versions, the settings and this CPU:
the next server of the same model loads it in milliseconds. Only raw scores are compiled, the
trees of a class summed one after another as LightGBM sums them (one block: lleaves' default
cache blocking adds the trees in another order, which changes the last bits); the caller turns
scores into answers and proves them against the model's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

RawScores = Callable[[Any], Any]
SETTINGS = {"raw_score": True, "finline": False, "fcodemodel": "large", "use_fp64": True}
TIMEOUT = 900.0  # seconds a compilation may take before it is given up
CACHE = "serve-compiled"  # under the project's state directory


def _versions() -> str | None:
    """lleaves' and llvmlite's versions, or None when either is not installed."""
    try:
        return f"lleaves {metadata.version('lleaves')} llvmlite {metadata.version('llvmlite')}"
    except metadata.PackageNotFoundError:
        return None


def _host() -> str:
    """The CPU the object code is compiled for (a cached object is only valid on it)."""
    import llvmlite.binding as llvm

    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot tell on some hosts
        features = ""
    return f"{llvm.get_process_triple()} {llvm.get_host_cpu_name()} {features}"


def _load(text: Path, obj: Path) -> RawScores:
    """The compiled object at *obj* (of the model in *text*), as a raw-score function."""
    import lleaves

    model = lleaves.Model(model_file=str(text))
    model.compile(cache=str(obj), fblocksize=max(1, model.num_trees()), **SETTINGS)

    def scores(matrix: Any) -> Any:
        return model.predict(matrix, n_jobs=1)  # one request: threads only add start-up

    return scores


class Compilation:
    """One booster's compilation, started at once on a thread: `scores` is set once the object
    code is loaded, `state` says where it stands ("compiling", "ready", "unavailable: ...",
    "failed: ...")."""

    def __init__(self, model_text: str, directory: Path) -> None:
        self.scores: RawScores | None = None
        self.state = "compiling"
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(model_text, directory),
                                        name="compile-trees", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop a compilation still running (the server is stopping or the model is gone)."""
        self._closed = True
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()

    def _run(self, model_text: str, directory: Path) -> None:
        try:
            self._compile(model_text, directory)
        except Exception as exc:  # a slower path, never a failed request or a dead server
            self.state = f"failed: {type(exc).__name__}: {exc}"[:200]

    def _compile(self, model_text: str, directory: Path) -> None:
        versions = _versions()
        if versions is None:
            self.state = "unavailable: lleaves is not installed"
            return
        identity = f"{versions} {sorted(SETTINGS.items())} {_host()}\n{model_text}"
        key = hashlib.sha256(identity.encode()).hexdigest()[:32]
        directory.mkdir(parents=True, exist_ok=True)
        text, obj = directory / f"{key}.txt", directory / f"{key}.o"
        if not text.exists():
            _write(text, model_text.encode())
        if not obj.exists() and not self._closed:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "mlbuild.serve.compiled", str(text), str(obj)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = self._child.communicate(timeout=TIMEOUT)
            if self._child.returncode != 0:
                lines = err.decode(errors="replace").strip().splitlines() or ["no output"]
                self.state = f"failed: exit {self._child.returncode}: {lines[-1]}"[:200]
                return
        if not self._closed:
            self.scores = _load(text, obj)
            self.state = "ready"


def _write(path: Path, data: bytes) -> None:
    """Write *path* whole or not at all (another server may read it meanwhile)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _compile_child(text: Path, obj: Path) -> None:
    """Compile *text* into *obj* (the child process): one compiler at a time per object, the
    object renamed into place only once it has loaded and run."""
    import fcntl

    import numpy as np

    with contextlib.suppress(OSError):
        os.nice(5)  # the server's requests come first
    with open(obj.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker's server may compile the same model
        if obj.exists():
            return
        tmp = obj.with_name(f"{obj.name}.{os.getpid()}.tmp")
        _load(text, tmp)  # compiles, writing the object code to tmp
        import lleaves

        width = lleaves.Model(model_file=str(text)).num_feature()
        _load(text, tmp)(np.zeros((1, width)))  # it loads and runs: the server can load it
        os.replace(tmp, obj)


if __name__ == "__main__":
    _compile_child(Path(sys.argv[1]), Path(sys.argv[2]))
