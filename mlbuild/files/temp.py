"""Names of temporary files that carry their writer's pid, so a later run can tell which ones
a killed process left behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlbuild.files.names import derived

# .<name>.<pid>-<12 hex>.tmp
_OURS = re.compile(r"^\..+\.(\d+)-[0-9a-f]{12}\.tmp$")
# what mlbuild wrote before names carried a pid: .<name>.<mkstemp's 8 chars | uuid hex>.tmp
_OLD = re.compile(r"^\..+\.([a-z0-9_]{8}|[0-9a-f]{32})\.tmp$")


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


def abandoned(name: str, any_tmp: bool = False) -> bool:
    """A temporary file whose writer is gone: ours with a dead pid, or an older mlbuild's
    (no pid), or with *any_tmp* (inside the cache) any '*.tmp', DVC's too. Only asked while
    holding the project lock, so no writer that names no pid is alive."""
    if not name.endswith(".tmp"):
        return False
    pid = writer(name)
    if pid is not None:
        return pid != os.getpid() and not alive(pid)
    return any_tmp or _OLD.match(name) is not None
