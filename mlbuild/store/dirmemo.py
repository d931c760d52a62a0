"""A per-directory memo of what a directory of many files held: each file's name, stat
identity and md5 in walk order, and the directory's own hash, in one file per directory.

Why: a status of a 100,000-file directory used to load the whole stat cache (a 12 MB JSON
map, ~0.2 s) and build the 100,000-entry manifest again to learn that nothing changed. With
the memo it stats every file (as DVC does: a directory's mtime does not move when a file in
it is written in place), compares the list of stat identities with the remembered one in one
C-level comparison, and answers the hash from the memo when they are equal. The trust is the
stat cache's, entry by entry: an md5 is only remembered for the (inode, mtime, ctime, size) a
file had throughout its hashing, and an entry whose stat moved meanwhile gets NEVER.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = 2  # bump when the layout changes: an older memo is then ignored
MIN_FILES = 64  # smaller directories are cheap to check without a memo
KEPT = 32  # memo files kept (the least recently written are removed first)
Stat = tuple[int, ...]  # (inode, mtime_ns, ctime_ns, size): files.layout.stat_key
NEVER: Stat = (-1, -1, -1, -1)  # the stat of a file whose hash must not be trusted


@dataclass
class Memo:
    """What one directory held: names (manifest relpaths in walk order), their stats and
    md5s, and the directory's hash ('<md5>.dir'; None when not yet computed).

    *origin* is the hash of an earlier state of the same names, and *diff* the md5 that
    state had at every index whose file was read again since: so the files changed since a
    recorded hash are named without reading its 100,000-entry manifest."""

    names: list[str]
    stats: list[Stat]
    md5s: list[str]
    tree: str | None = None
    origin: str | None = None
    diff: dict[int, str] = field(default_factory=dict)

    def changed_since(self, tree: str) -> list[str] | None:
        """Relpaths whose md5 differs from the state whose hash is *tree*; None when this
        memo does not know that state."""
        if tree == self.tree:  # these entries are that state
            return []
        if tree != self.origin:
            return None
        md5s, names = self.md5s, self.names
        return sorted(names[i] for i, old in self.diff.items() if md5s[i] != old)


def _valid(data: object, key: str) -> Memo | None:
    """The memo in *data* when it has this format and key and consistent lists."""
    if not (isinstance(data, tuple) and len(data) == 8 and data[0] == FORMAT
            and data[1] == key):
        return None
    names, stats, md5s, tree, origin, diff = data[2:]
    if not (isinstance(names, list) and isinstance(stats, list) and isinstance(md5s, list)
            and len(names) == len(stats) == len(md5s) and isinstance(diff, dict)
            and all(isinstance(i, int) and 0 <= i < len(names) for i in diff)
            and (tree is None or isinstance(tree, str))
            and (origin is None or isinstance(origin, str))):
        return None
    return Memo(names, stats, md5s, tree, origin, diff)


class DirMemo:
    """The memo files of one project (in its state directory)."""

    def __init__(self, folder: Path, writable: bool = True) -> None:
        self.folder = folder
        self.writable = writable

    def _file(self, key: str) -> Path:
        name = hashlib.md5(key.encode("utf-8", "surrogateescape"),
                           usedforsecurity=False).hexdigest()
        return self.folder / f"{name[:20]}.memo"

    def load(self, key: str) -> Memo | None:
        """The memo of the directory *key* (project-relative path), None when there is none
        or it is unreadable (a memo only saves time: anything odd is ignored)."""
        try:
            data = marshal.loads(self._file(key).read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return None
        return _valid(data, key)

    def save(self, key: str, memo: Memo) -> None:
        """Remember *memo* for the directory *key*, unless it is too small to need one."""
        if not self.writable or len(memo.names) < MIN_FILES:
            return
        from mlbuild.dvcfmt.yamlio import write_atomic
        from mlbuild.errors import DiskFullError

        # marshal version 2: no table of every object written (tens of MB for 100,000 files)
        body = marshal.dumps((FORMAT, key, memo.names, memo.stats, memo.md5s, memo.tree,
                              memo.origin, memo.diff), 2)
        with contextlib.suppress(OSError, DiskFullError):
            write_atomic(self._file(key), body, "a directory memo", durable=False)
            self._prune()

    def _prune(self) -> None:
        """Keep the KEPT most recently written memo files."""
        found = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".memo"):
                with contextlib.suppress(OSError):
                    found.append((entry.stat().st_mtime_ns, entry.path))
        for _, path in sorted(found)[:-KEPT]:
            with contextlib.suppress(OSError):
                os.unlink(path)  # noqa: PTH108
