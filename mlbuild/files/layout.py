"""Where a project keeps mlbuild's files, and the stat identity every change check uses."""

from __future__ import annotations

import os
from pathlib import Path

ENV_FILE = ".mlbuild/environment.yaml"  # the environment record, a params file of each stage
DVC_FILE = "dvc.yaml"
LOCK_FILE = "dvc.lock"
PARAMS_FILE = "params.yaml"  # DVC's default params file; generated from configs/ by Hydra
STATE_DIR = ".dvc/tmp/mlbuild"  # mlbuild's private state (inside .dvc/tmp, which DVC ignores)


def state_dir(root: Path) -> Path:
    """mlbuild's private state directory of the project at *root*."""
    return root / STATE_DIR

StatKey = tuple[int, ...]


def stat_key(st: os.stat_result) -> StatKey:
    """The identity of a file's content as far as the filesystem tells. The inode change
    time is part of it: mtime can be set back after an edit (`touch -r`), ctime cannot."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
