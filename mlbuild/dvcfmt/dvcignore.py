"""What DVC leaves out when it hashes a directory: .git/.hg/.dvc and the root .dvcignore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DVCIGNORE = ".dvcignore"
ALWAYS_IGNORED = frozenset({".git", ".hg", ".dvc"})  # DVC's built-in ignores (as directories)


class IgnoreRules:
    """The project's ignore patterns (gitignore syntax), matched on project-relative paths.

    Like DVC, a directory that matches is pruned with everything in it. Only the root
    .dvcignore is read: nested .dvcignore files are not supported.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._spec: Any = None
        try:
            lines = (root / DVCIGNORE).read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            lines = []
        patterns = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if patterns:
            import pathspec  # only projects with patterns pay for the import

            self._spec = pathspec.GitIgnoreSpec.from_lines(patterns)

    @property
    def has_patterns(self) -> bool:
        """False when only DVC's built-in names are ignored (no .dvcignore patterns)."""
        return self._spec is not None

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        """True when DVC would not see this project-relative file or directory."""
        name = relpath.rsplit("/", 1)[-1]
        if name == ".git" or (is_dir and name in ALWAYS_IGNORED):
            return True
        if self._spec is None:
            return False
        return bool(self._spec.match_file(relpath + "/" if is_dir else relpath))
