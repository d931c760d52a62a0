"""Data tracked by .dvc pointer files (like data.dvc): find it, and restore it when missing."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from mlbuild.cache import Cache
from mlbuild.fingerprint import Hasher, HashInfo
from mlbuild.yamlio import load_mapping


@dataclass(frozen=True)
class TrackedOut:
    """One output of a .dvc pointer file."""

    dvcfile: str
    path: str
    info: HashInfo


def every_pointer_file(root: Path) -> set[str]:
    """Every .dvc pointer file of the project (git's view when it is a git work tree)."""
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard", "--", "*.dvc"], capture_output=True, check=True)
        return {n for n in proc.stdout.decode().split("\0") if n and (root / n).is_file()}
    except (OSError, subprocess.CalledProcessError):
        found = set()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, root)
            found |= {n if rel == "." else f"{rel}/{n}" for n in filenames if n.endswith(".dvc")}
        return found


def find_pointers(root: Path, paths: list[str], everything: bool = False) -> list[TrackedOut]:
    """Outputs of root-level .dvc files and of '<path>.dvc' files next to *paths* (with
    everything, of every .dvc file in the project)."""
    files = {p.name for p in root.glob("*.dvc") if p.is_file()}
    if everything:
        files |= every_pointer_file(root)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            cand = "/".join(parts[:i]) + ".dvc"
            if (root / cand).is_file():
                files.add(cand)
    found = []
    for name in sorted(files):
        data = load_mapping(root / name, name)
        base = posixpath.dirname(name)
        for out in data.get("outs") or []:
            if isinstance(out, dict) and out.get("path") and out.get("md5"):
                info = HashInfo(md5=str(out["md5"]), size=int(out.get("size") or 0),
                                nfiles=out.get("nfiles"))
                rel = posixpath.normpath(posixpath.join(base, str(out["path"])))
                found.append(TrackedOut(dvcfile=name, path=rel, info=info))
    return found


def covers(tracked: list[TrackedOut], path: str) -> TrackedOut | None:
    """The tracked output that is *path* or contains it."""
    for out in tracked:
        if path == out.path or path.startswith(out.path + "/"):
            return out
    return None


def restore_missing(root: Path, tracked: list[TrackedOut], cache: Cache) -> list[str]:
    """Check out missing tracked data from the local cache; return pointers needing a pull."""
    need_pull = []
    for out in tracked:
        dest = root / out.path
        if dest.exists():
            continue
        if cache.complete(out.info):
            cache.checkout(out.info, dest)
        else:
            need_pull.append(out.dvcfile)
    return sorted(set(need_pull))


@dataclass(frozen=True)
class TrackedChange:
    """A .dvc-tracked output that differs from its pointer file, in `dvc status`'s words."""

    dvcfile: str
    path: str
    change: str  # 'modified', 'deleted' or 'not in cache'


def changes(tracked: list[TrackedOut], hasher: Hasher, cache: Cache) -> list[TrackedChange]:
    """Tracked outputs edited, deleted or missing from the cache, as `dvc status` reports them
    whether or not a stage reads them."""
    found = []
    for out in tracked:
        current = hasher.path(out.path)
        if current is None:
            change = "deleted"
        elif current.md5 != out.info.md5:
            change = "modified"
        elif not cache.complete(out.info):
            change = "not in cache"
        else:
            continue
        found.append(TrackedChange(out.dvcfile, out.path, change))
    return found
