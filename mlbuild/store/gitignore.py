"""Keep cached outputs out of git, the way DVC does (a '/name' line in the parent's .gitignore)."""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path

from mlbuild.dvcfmt.yamlio import write_atomic
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

    A build passes durable=False: its dvc.lock writes fsync the .gitignore files first
    (yamlio.sync_written), one batch per lock write instead of one fsync per output.
    """
    if not in_git(root):
        return
    path = root / relpath
    ensure_inside(root, path)  # never write a .gitignore through a link out of the project
    gitignore = path.parent / ".gitignore"
    entry = f"/{escape(path.name)}"
    with _LOCK:
        try:
            text = gitignore.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        if entry in text.splitlines():
            return
        if text and not text.endswith("\n"):
            text += "\n"
        write_atomic(gitignore, text + entry + "\n", durable=durable)
