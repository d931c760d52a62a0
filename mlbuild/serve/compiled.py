"""LightGBM trees compiled to machine code for the server's prediction path, by lleaves (which
JIT-compiles a LightGBM model with llvmlite: no C compiler at run time). The one owner of that
optional dependency (`pip install 'mlbuild[serve-compiled]'`): imported lazily, and its absence
is only a slower path, never an error.

A model is compiled when it is loaded, before the server says ready (or before a followed
version is switched to): in a child process, so that a crash or a hang in LLVM cannot touch the
server, and only once per machine: the object code is cached in the user's cache directory
under a key made of the booster's text, lleaves' and llvmlite's versions, the settings and this
CPU, and the next server of the same model (any clone or copy of the project) loads it in
milliseconds. Compiling the example's 600 trees takes 5-15 s. Only raw scores are compiled,
the trees of a class summed one after another as LightGBM sums them (one block: lleaves'
default cache blocking adds the trees in another order, which changes the last bits); the
caller turns scores into answers and proves them against the model's own.
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
TIMEOUT = 600.0  # seconds a compilation may take before the booster answers instead
CACHE = "serve-compiled"  # under the user's cache directory


def _versions() -> str:
    """lleaves' and llvmlite's versions (ImportError when either cannot be imported)."""
    import lleaves  # noqa: F401 -- importable, not only installed
    import llvmlite

    return f"lleaves {metadata.version('lleaves')} llvmlite {llvmlite.__version__}"


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


def cache_dir() -> Path:
    """Where compiled objects are kept: the user's cache (the object depends on the model, the
    libraries and the CPU only, so every clone and copy of a project shares it)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("mlbuild")) / CACHE


def compile_trees(model_text: str, directory: Path | None = None
                  ) -> tuple[RawScores | None, str]:
    """(the compiled model's raw-score function, "ready"), or (None, why not): "unavailable:
    ..." without lleaves, "failed: ..." when compiling or loading went wrong. Never raises."""
    try:
        return _compile(model_text, directory or cache_dir()), "ready"
    except ImportError as exc:  # the optional extra is not installed
        return None, f"unavailable: {exc}"[:200]
    except Exception as exc:  # a slower path, never a failed request or a dead server
        return None, f"failed: {type(exc).__name__}: {exc}"[:200]


def _compile(model_text: str, directory: Path) -> RawScores:
    identity = f"{_versions()} {sorted(SETTINGS.items())} {_host()}\n{model_text}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:32]
    directory.mkdir(parents=True, exist_ok=True)
    text, obj = directory / f"{key}.txt", directory / f"{key}.o"
    if not text.exists():
        _write(text, model_text.encode())
    if not obj.exists():
        child = subprocess.run(
            [sys.executable, "-m", "mlbuild.serve.compiled", str(text), str(obj)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=TIMEOUT, check=False)
        if child.returncode != 0:
            lines = child.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"the compiler exited with {child.returncode}: {lines[-1]}")
    return _load(text, obj)


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
