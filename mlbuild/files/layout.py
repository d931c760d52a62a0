"""Where a project keeps mlbuild's files, and the stat identity every change check uses."""

from __future__ import annotations

import os
from pathlib import Path

ENV_FILE = ".mlbuild/environment.yaml"  # the environment record, a params file of each stage
DVC_FILE = "dvc.yaml"
LOCK_FILE = "dvc.lock"
PARAMS_FILE = "params.yaml"  # DVC's default params file; generated from configs/ by Hydra
STATE_DIR = ".dvc/tmp/mlbuild"  # mlbuild's private state (inside .dvc/tmp, which DVC ignores)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory holding dvc.yaml, stages/ declarations or .dvc/."""
    here = (start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / ".dvc").is_dir() or (cand / DVC_FILE).is_file():
            return cand
    from mlbuild.errors import UsageError

    raise UsageError(
        f"no mlbuild/DVC project found in {here} or its parents "
        "(expected dvc.yaml or a .dvc directory)"
    )


def state_dir(root: Path) -> Path:
    """mlbuild's private state directory of the project at *root*."""
    return root / STATE_DIR

StatKey = tuple[int, ...]


def stat_key(st: os.stat_result) -> StatKey:
    """The identity of a file's content as far as the filesystem tells. The inode change
    time is part of it: mtime can be set back after an edit (`touch -r`), ctime cannot."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
