"""The environment a stage command gets: scrubbed and pinned when hermetic, DVC's otherwise."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mlbuild.config.settings import Hermetic

HOOK_DIR = Path(__file__).parent / "hook"
# Passed through unchanged even in hermetic mode: machine settings that are not inputs
# (OPENBLAS_* work around CPU-specific bugs in older OpenBLAS builds). PYTHONPATH is where
# the interpreter finds packages, like PATH for programs: compile records the versions of
# the packages each stage imports from this very path, so the stage must import them from it.
PASS_THROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SYSTEMROOT", "PYTHONPATH")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS",
               "MLBUILD_THREADS")
PINNED = {"TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}
# Read by almost every program from its terminal; not worth a finding.
TERMINAL_NOISE = ("TERM", "COLUMNS", "LINES", "SHLVL", "PWD", "OLDPWD", "_", "LS_COLORS",
                  "PS1", "SHELL", "TERM_PROGRAM", "COLORTERM", "NO_COLOR", "FORCE_COLOR")


def _path_with_interpreter(path: str) -> str:
    bindir = str(Path(sys.executable).parent)
    parts = [p for p in path.split(os.pathsep) if p and p != bindir]
    return os.pathsep.join([bindir, *parts])


def allowed_names(hermetic: Hermetic) -> set[str]:
    """Caller variables a hermetic stage may see."""
    return {"PATH", *PASS_THROUGH, *hermetic.env}


def _hermetic(env: dict[str, str], hermetic: Hermetic, home: Path, guard: Path | None,
              shim: Path | None) -> None:
    """Pin what a hermetic stage gets, and point it at the guard and the python shim."""
    env.update(PINNED)
    home.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(home / "tmp", ignore_errors=True)  # HOME's caches persist; TMPDIR not
    (home / "tmp").mkdir()
    env["HOME"] = str(home)
    env["TMPDIR"] = str(home / "tmp")
    # bytecode goes to the stage's own area: none is read from or planted in the project
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    env.update({var: str(hermetic.threads) for var in THREAD_VARS})
    env["MLBUILD_SEED"] = str(hermetic.seed)
    env["MLBUILD_NETWORK"] = "allow" if hermetic.network else "deny"
    env["MLBUILD_HERMETIC"] = "1"
    if guard is not None:
        env["MLBUILD_GUARD"] = str(guard)
    if shim is not None:
        from mlbuild.sandbox.shim import python_shim

        env["PATH"] = os.pathsep.join([str(python_shim(shim)), env["PATH"]])


def stage_environment(
    root: Path, stage: str, hermetic: Hermetic | None, home: Path, trace_dir: Path,
    allow_network: str, guard: Path | None = None, shim: Path | None = None,
) -> dict[str, str]:
    """The environment for one stage command. *hermetic* None means adoption mode: the
    caller's environment passes through (as under dvc repro) and findings only warn.
    *allow_network* tells the refused stage how to allow the network; *guard* is the write
    policy file the audit hook enforces in a hermetic stage, *shim* where its python
    launcher goes."""
    caller = dict(os.environ)
    if hermetic is None:
        env = caller
        env["MLBUILD_NETWORK"] = "allow"
    else:
        env = {k: v for k, v in caller.items() if k in allowed_names(hermetic)}
    env["PATH"] = _path_with_interpreter(caller.get("PATH", ""))
    if hermetic is not None:
        _hermetic(env, hermetic, home, guard, shim)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HOOK_DIR), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["DVC_ROOT"] = str(root)
    env["DVC_STAGE"] = stage
    env["MLBUILD_ROOT"] = str(root) + os.sep
    env["MLBUILD_TRACE_DIR"] = str(trace_dir)
    env["MLBUILD_ALLOW_NETWORK"] = allow_network
    return env
