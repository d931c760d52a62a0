"""What a killed mlbuild (or DVC) leaves behind: stranded backups, abandoned temporary files,
stage processes. Found and undone while holding the project lock; only names that carry a dead
mlbuild pid are removed in the project, and in the cache (which other projects may share) only
temporary files nobody has written to for an hour."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.files.layout import state_dir
from mlbuild.files.temp import abandoned, abandoned_in_cache, alive
from mlbuild.store.boundary import BoundaryError, ensure_inside
from mlbuild.store.cache import remove

BACKUP_SUFFIX = ".mlbuild-backup"


@dataclass
class Leftovers:
    """What a cleanup found: backups put back, files removed, outputs left as they are."""

    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # a later build's output, or a path leading out
    dry: bool = False  # only find them (gc without --force, fsck without --repair)

    def __bool__(self) -> bool:
        return bool(self.restored or self.removed or self.kept)

    def summary(self, root: Path) -> str:
        """One line saying what was cleaned, paths shown relative to *root* where inside it."""
        def shown(paths: list[str]) -> str:
            rel = [os.path.relpath(p, root) if Path(p).is_relative_to(root) else p
                   for p in paths]
            return ", ".join(rel[:3]) + (f" and {len(rel) - 3} more" if len(rel) > 3 else "")

        parts = [f"put back {shown(self.restored)}"] if self.restored else []
        parts += [f"left {shown(self.kept)} as it is"] if self.kept else []
        parts += [f"removed {len(self.removed)} leftover(s): {shown(self.removed)}"
                  ] if self.removed else []
        return "cleaned up after a killed run: " + "; ".join(parts)


def _box_owner(box: Path) -> int | None:
    parts = box.name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _inside(root: Path, path: Path) -> bool:
    try:
        ensure_inside(root, path)
    except BoundaryError:
        return False
    return True


def _recorded(root: Path) -> dict[str, dict[str, str]]:
    """stage -> output path (as dvc.lock writes it) -> md5, from the dvc.lock on disk now."""
    with suppress(Exception):  # unreadable: no later build can be told apart, as before
        from mlbuild.dvcfmt.lockfile import LockFile

        return {name: entry.out_md5s() for name, entry in LockFile(root).stages.items()}
    return {}


def rebuilt(entry: dict[str, object], lock: dict[str, dict[str, str]]) -> bool:
    """True when dvc.lock records the output differently from when the killed run moved it
    aside: a later build (`dvc repro`) made what is there now, so it must stay."""
    stage, def_path = entry.get("stage"), entry.get("def_path")
    if not isinstance(stage, str) or not isinstance(def_path, str):
        return False  # a box from before these were recorded
    now = lock.get(stage, {}).get(def_path)
    return now is not None and now != entry.get("lock")


def _put_back(root: Path, box: Path, found: Leftovers, crashed: bool) -> None:
    """Put the outputs a killed run moved aside back in place. After a crash, what the killed
    stage left is unfinished, so the backup replaces it, unless a later build recorded the
    output in dvc.lock; otherwise (a backup kept because it could not be put back) only a
    missing output is replaced. Never through a link out of the project."""
    try:
        entries = json.loads((box / "moved.json").read_text())
    except (OSError, ValueError):
        entries = []
    lock = _recorded(root) if crashed else {}
    keep_box = False
    for entry in entries:
        rel = str(entry.get("path"))
        target = root / rel
        for aside in map(Path, entry.get("aside") or []):
            if not (aside.exists() or aside.is_symlink()):
                continue
            if not _inside(root, target):
                found.kept.append(rel)
                keep_box = True  # the backup stays where it is, for the user to look at
            elif not (target.exists() or target.is_symlink()) or (
                    crashed and not rebuilt(entry, lock)):
                found.restored.append(rel)
                if not found.dry:
                    remove(target)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(aside, target)
            else:
                if crashed:
                    found.kept.append(rel)
                found.removed.append(str(aside))
    if not keep_box:
        found.removed.append(str(box))
        if not found.dry:
            shutil.rmtree(box, ignore_errors=True)


def _backups(root: Path, found: Leftovers, crashed: bool) -> None:
    backup = state_dir(root) / "backup"
    for box in sorted(backup.iterdir()) if backup.is_dir() else []:
        pid = _box_owner(box)
        if pid is not None and pid != os.getpid() and alive(pid):
            continue
        _put_back(root, box, found, crashed)


def _dirs(root: Path, outputs: list[str]) -> Iterator[tuple[Path, bool]]:
    """Where temporary files are written (and whether it is the cache): the root, beside
    outputs, mlbuild's state, the cache."""
    yield root, False
    for out in outputs:
        yield (root / out).parent, False
    state = state_dir(root)
    yield state, False
    yield from ((p, False) for p in state.iterdir() if p.is_dir()) if state.is_dir() else ()
    from mlbuild.dvcfmt.dvcconfig import cache_dir

    files = cache_dir(root) / "files" / "md5"
    yield files, True
    yield from ((p, True) for p in files.iterdir() if p.is_dir()) if files.is_dir() else ()
    runs = cache_dir(root) / "runs"
    yield from ((p, True) for p in runs.glob("*/*") if p.is_dir()) if runs.is_dir() else ()


def _stray_backup(root: Path, path: Path, found: Leftovers) -> None:
    """A same-directory backup (an output on another filesystem) whose box is gone."""
    target = path.parent / path.name[1:].rsplit(".", 2)[0]
    if not (target.exists() or target.is_symlink()):
        found.restored.append(os.path.relpath(target, root))
        if not found.dry:
            os.replace(path, target)
    else:
        found.removed.append(str(path))
        if not found.dry:
            remove(path)


def _leftover(root: Path, entry: os.DirEntry[str], in_cache: bool, now: float,
              found: Leftovers) -> None:
    """Clean one directory entry if a killed writer left it: a backup or temporary file."""
    path = Path(entry.path)
    if entry.name.startswith(".") and entry.name.endswith(BACKUP_SUFFIX):
        pid = int(entry.name.rsplit(".", 2)[1].split("-")[0])
        if pid != os.getpid() and not alive(pid):
            _stray_backup(root, path, found)
    elif entry.is_file(follow_symlinks=False) and (
            abandoned_in_cache(entry.name, entry.stat(follow_symlinks=False).st_mtime, now)
            if in_cache else abandoned(entry.name)):
        found.removed.append(str(path))
        if not found.dry:
            path.unlink()


def _temporaries(root: Path, outputs: list[str], found: Leftovers) -> None:
    seen: set[Path] = set()
    now = time.time()
    for folder, in_cache in _dirs(root, outputs):
        if folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        if not in_cache and not _inside(root, folder / "x"):
            continue  # a directory a link leads out to is not the project's to clean
        for entry in os.scandir(folder):
            with suppress(OSError, ValueError):
                _leftover(root, entry, in_cache, now, found)


def _traces(root: Path, found: Leftovers) -> None:
    trace = state_dir(root) / "trace"
    for path in trace.iterdir() if trace.is_dir() else []:
        found.removed.append(str(path))
        if not found.dry:
            shutil.rmtree(path, ignore_errors=True)


def _outputs(root: Path) -> list[str]:
    """Declared output paths (dvc.yaml, else dvc.lock), for the directories to look in."""
    with suppress(Exception):  # a broken dvc.yaml is reported by the command itself
        from mlbuild.dvcfmt.dvcyaml import load_pipeline

        return [o.path for s in load_pipeline(root).stages.values() for o in s.outs]
    return []


def clean(root: Path, crashed: bool, dry: bool = False) -> Leftovers:
    """Kill orphaned stages, put stranded backups back, remove abandoned temporary files.

    After a crash (*crashed*) a backup replaces what the killed stage left; otherwise only a
    missing output. Call only while holding the project lock.
    """
    from mlbuild.engine.procgroup import kill_orphans

    if not dry:
        kill_orphans(root, state_dir(root) / "stages.pgid")
    found = Leftovers(dry=dry)
    _backups(root, found, crashed)
    _temporaries(root, _outputs(root), found)
    _traces(root, found)
    return found
