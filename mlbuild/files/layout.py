"""Where a project keeps mlbuild's files, and the stat identity every change check uses."""

from __future__ import annotations

import os

ENV_FILE = ".mlbuild/environment.yaml"  # the environment record, a params file of each stage

StatKey = tuple[int, ...]


def stat_key(st: os.stat_result) -> StatKey:
    """The identity of a file's content as far as the filesystem tells. The inode change
    time is part of it: mtime can be set back after an edit (`touch -r`), ctime cannot."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
