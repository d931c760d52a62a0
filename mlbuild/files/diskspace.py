"""A full filesystem, in words: which one, how much is free, and what could not be written."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from mlbuild.errors import DiskFullError

FULL = (errno.ENOSPC, errno.EDQUOT)


def is_full(exc: BaseException) -> bool:
    """True for 'No space left on device' and 'Disk quota exceeded'."""
    return isinstance(exc, OSError) and exc.errno in FULL


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding *path* (or its nearest existing parent)."""
    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def describe(path: Path) -> str:
    """'the filesystem mounted at /data (12 KB free)'."""
    mount = mount_point(path)
    try:
        free = f", {shutil.disk_usage(mount).free // 1024} KiB free"
    except OSError:
        free = ""
    return f"the filesystem mounted at {mount} is full{free}"


def full_error(path: Path, what: str) -> DiskFullError:
    """The one-line error for a write that found no space."""
    return DiskFullError(
        f"no space left on device: could not write {what} ({path}); {describe(path)}; "
        "free some space and run again (nothing was left half-written)"
    )


def nearly_full(path: Path, margin: int = 64 * 1024) -> bool:
    """True when the filesystem holding *path* has (almost) no space left."""
    try:
        return shutil.disk_usage(mount_point(path)).free < margin
    except OSError:
        return False
