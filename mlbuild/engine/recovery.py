"""What a killed mlbuild (or DVC) leaves behind: stranded backups, abandoned temporary files,
stage processes. Found and undone while holding the project lock, so no live writer is hurt."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.files.temp import abandoned, alive
from mlbuild.store.cache import remove

BACKUP_SUFFIX = ".mlbuild-backup"


@dataclass
class Leftovers:
    """What a cleanup found: backups put back, files removed."""

    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    dry: bool = False  # only find them (gc without --force)

    def __bool__(self) -> bool:
        return bool(self.restored or self.removed)


def _state(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "mlbuild"


def _box_owner(box: Path) -> int | None:
    parts = box.name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _put_back(root: Path, box: Path, found: Leftovers, crashed: bool) -> None:
    """Put the outputs a killed run moved aside back in place. After a crash whatever the
    killed stage wrote there is unfinished, so the backup wins; otherwise (a backup kept
    because it could not be put back) only a missing output is replaced."""
    try:
        entries = json.loads((box / "moved.json").read_text())
    except (OSError, ValueError):
        entries = []
    for entry in entries:
        target = root / str(entry.get("path"))
        for aside in map(Path, entry.get("aside") or []):
            if not (aside.exists() or aside.is_symlink()):
                continue
            if crashed or not (target.exists() or target.is_symlink()):
                found.restored.append(str(entry.get("path")))
                if not found.dry:
                    remove(target)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(aside, target)
            else:
                found.removed.append(str(aside))
    found.removed.append(str(box))
    if not found.dry:
        shutil.rmtree(box, ignore_errors=True)


def _backups(root: Path, found: Leftovers, crashed: bool) -> None:
    backup = _state(root) / "backup"
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
    state = _state(root)
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


def _temporaries(root: Path, outputs: list[str], found: Leftovers) -> None:
    seen: set[Path] = set()
    for folder, in_cache in _dirs(root, outputs):
        if folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        for entry in os.scandir(folder):
            path = Path(entry.path)
            with suppress(OSError, ValueError):
                if entry.name.startswith(".") and entry.name.endswith(BACKUP_SUFFIX):
                    pid = int(entry.name.rsplit(".", 2)[1].split("-")[0])
                    if pid != os.getpid() and not alive(pid):
                        _stray_backup(root, path, found)
                elif (entry.name.startswith(".") or in_cache) and abandoned(
                        entry.name, any_tmp=in_cache) and entry.is_file(follow_symlinks=False):
                    found.removed.append(str(path))
                    if not found.dry:
                        path.unlink()


def _traces(root: Path, found: Leftovers) -> None:
    trace = _state(root) / "trace"
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
        kill_orphans(root, _state(root) / "stages.pgid")
    found = Leftovers(dry=dry)
    _backups(root, found, crashed)
    _temporaries(root, _outputs(root), found)
    _traces(root, found)
    return found
