"""Names of temporary files that carry their writer's pid, so a later run can tell which ones
a killed process left behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlbuild.files.names import derived

# .<name>.<pid>-<12 hex>.tmp: the only names mlbuild removes outside the cache. Older
# mlbuild names without a pid are not recognised: they look like a user's own files.
_OURS = re.compile(r"^\..+\.(\d+)-[0-9a-f]{12}\.tmp$")
# a cache may be shared by several projects and machines (cache.dir), so a temporary file
# there is only abandoned once nobody has written to it for this long
CACHE_GRACE = 3600.0


def tmp_beside(path: Path, name: str | None = None) -> Path:
    """A fresh temporary path in *path*'s directory, named after it and this process."""
    unique = f".{os.getpid()}-{os.urandom(6).hex()}.tmp"
    return path.parent / derived(name or path.name, ".", unique)


def writer(name: str) -> int | None:
    """The pid embedded in one of our temporary file names, or None."""
    match = _OURS.match(name)
    return int(match.group(1)) if match else None


def alive(pid: int) -> bool:
    """True while a process has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned(name: str) -> bool:
    """One of our temporary files (its name carries its writer's pid) whose writer is gone.
    Any other name is a user's file, whatever it looks like."""
    pid = writer(name)
    return pid is not None and pid != os.getpid() and not alive(pid)


def abandoned_in_cache(name: str, mtime: float, now: float) -> bool:
    """A '*.tmp' file in the cache (ours, DVC's or another tool's) that no live process of
    ours writes and nobody has written to for CACHE_GRACE: the cache may be shared by other
    projects and machines, whose writers the project lock does not stop."""
    if not name.endswith(".tmp") or now - mtime < CACHE_GRACE:
        return False
    pid = writer(name)
    return pid is None or (pid != os.getpid() and not alive(pid))
