"""Keep cached outputs out of git, the way DVC does (a '/name' line in the parent's .gitignore)."""

from __future__ import annotations

import threading
from pathlib import Path

from mlbuild.yamlio import write_atomic

_LOCK = threading.Lock()


def ignore(root: Path, relpath: str) -> None:
    """Add '/<name>' to the .gitignore beside *relpath* unless it is already there."""
    if not (root / ".git").exists():
        return
    path = root / relpath
    gitignore = path.parent / ".gitignore"
    entry = f"/{path.name}"
    with _LOCK:
        try:
            text = gitignore.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        if entry in text.splitlines():
            return
        if text and not text.endswith("\n"):
            text += "\n"
        write_atomic(gitignore, text + entry + "\n")
