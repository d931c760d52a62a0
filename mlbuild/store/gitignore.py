"""Keep cached outputs out of git, the way DVC does (a '/name' line in the parent's .gitignore)."""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path

from mlbuild.dvcfmt.yamlio import defer_until_sync, write_atomic
from mlbuild.store.boundary import ensure_inside

_LOCK = threading.Lock()
_SPECIAL = re.compile(r"([\\\[\]*?!#])")


@functools.cache
def in_git(root: Path) -> bool:
    """True when the project is inside a git work tree (also `dvc init --subdir` projects)."""
    return any((d / ".git").exists() for d in (root, *root.parents))


def escape(name: str) -> str:
    """A file name as a literal gitignore pattern (DVC escapes the same way)."""
    escaped = _SPECIAL.sub(r"\\\1", name)
    stripped = escaped.rstrip(" ")
    return stripped + "\\ " * (len(escaped) - len(stripped))


def ignore(root: Path, relpath: str, durable: bool = True) -> None:
    """Add '/<name>' to the .gitignore beside *relpath* unless it is already there.

    A build passes durable=False: the entry is written (with the others of that .gitignore)
    just before the next dvc.lock write (yamlio.sync_written), which also fsyncs it; a
    100-stage build then rewrites the root .gitignore once, not 100 times.
    """
    if not in_git(root):
        return
    path = root / relpath
    ensure_inside(root, path)  # never write a .gitignore through a link out of the project
    gitignore = path.parent / ".gitignore"
    entry = f"/{escape(path.name)}"
    if durable:
        with _LOCK:
            _add(gitignore, [entry], durable=True)
        return
    with _LOCK:
        if not _PENDING:  # the first since the last sync: have the next one write them
            defer_until_sync(_write_pending)
        _PENDING.setdefault(gitignore, []).append(entry)


_PENDING: dict[Path, list[str]] = {}  # .gitignore -> entries not written yet


def _write_pending() -> None:
    """Write every pending entry, each .gitignore once (durable=False: synced by the caller)."""
    with _LOCK:
        pending = dict(_PENDING)
        _PENDING.clear()
        for gitignore, entries in pending.items():
            _add(gitignore, entries, durable=False)


def _add(gitignore: Path, entries: list[str], durable: bool) -> None:
    """Append the entries the file lacks (the caller holds _LOCK)."""
    try:
        text = gitignore.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    lines = set(text.splitlines())
    new = [e for e in dict.fromkeys(entries) if e not in lines]
    if not new:
        return
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(gitignore, text + "".join(f"{e}\n" for e in new), durable=durable)
