"""Scanning a workspace directory for its (relpath, md5) entries: every file is stat-ed, and
its md5 is answered from the directory's memo (see dirmemo) or the stat cache while its stat
identity is unchanged; only files whose stat moved are read again."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.store.boundary import refuse_special
from mlbuild.store.dirmemo import NEVER, Memo, Stat

if TYPE_CHECKING:
    from mlbuild.store.hashing import Hasher

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass
class Listing:
    """Every file of a directory DVC would hash, in walk order: manifest relpaths, their stat
    identities and their total size."""

    names: list[str]
    stats: list[Stat]
    size: int


def gather(top: Path, skip: Callable[[str, bool], bool], plain: bool, shown: str) -> Listing:
    """Stat every file under *top* (os.walk's order, folders sorted; .dvcignore applied by
    *skip*, or only '.git' files left out when *plain*); special files are refused."""
    names: list[str] = []
    stats: list[Stat] = []
    size = 0
    top_s = str(top)
    stat_at, is_reg = os.stat, stat.S_ISREG
    for dirpath, dirnames, filenames in os.walk(top_s):  # strings, not Paths: 100k+ files
        rel_dir = dirpath[len(top_s) + 1:]
        prefix = rel_dir.replace(os.sep, "/") + "/" if rel_dir else ""
        dirnames[:] = sorted(d for d in dirnames if not skip(prefix + d, True))
        kept = ([n for n in filenames if n != ".git"] if plain
                else [n for n in filenames if not skip(prefix + n, False)])
        fd = os.open(dirpath, _DIR_FLAGS)
        try:  # each file stat-ed relative to its folder: the kernel resolves one name
            found = [stat_at(name, dir_fd=fd) for name in kept]
        finally:
            os.close(fd)
        if not all(map(is_reg, [st.st_mode for st in found])):
            for name, st in zip(kept, found, strict=True):  # a FIFO would block the hash
                refuse_special(top, st.st_mode, f"{shown}/{prefix}{name}")
        names += [prefix + name for name in kept]
        stats += [(st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size) for st in found]
        size += sum(st.st_size for st in found)
    return Listing(names, stats, size)


def _hash(top: str, rel: str, before: Stat) -> tuple[str, Stat]:
    """Read one file's md5; its stat is trusted only if it did not move while it was read."""
    from mlbuild.store.hashing import md5_file

    full = Path(top, rel)
    md5 = md5_file(full)
    st = full.stat()
    after = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    return md5, (before if after == before else NEVER)


def _from_memo(listing: Listing, memo: Memo, top: str) -> Memo:
    """The new memo of the listed files from a memo of the same names (most unchanged):
    only files whose stat moved are read; each one's md5 in the memo's reference state is
    kept in *diff*, so the files changed since that state can be named."""
    md5s, stats = list(memo.md5s), list(listing.stats)
    origin = memo.tree or memo.origin
    diff = {} if memo.tree else dict(memo.diff)
    for i, (now, then) in enumerate(zip(listing.stats, memo.stats, strict=True)):
        if now != then:
            diff.setdefault(i, md5s[i])
            md5s[i], stats[i] = _hash(top, listing.names[i], now)
    return Memo(listing.names, stats, md5s, None, origin, diff)


def _from_stat_cache(listing: Listing, hasher: Hasher, key: str, memo: Memo | None
                     ) -> tuple[list[str], list[Stat]]:
    """md5s of the listed files from an older memo of other names, else the stat cache
    (entries with the same stat identity), else read."""
    known = dict(zip(memo.names, zip(memo.stats, memo.md5s, strict=True), strict=True)
                 ) if memo else {}
    table = hasher.cache.table() if memo is None else {}
    md5s, stats = [], list(listing.stats)
    top = str(hasher.root / key)
    for i, (rel, now) in enumerate(zip(listing.names, listing.stats, strict=True)):
        seen = known.get(rel)
        entry = table.get(f"{key}/{rel}") if seen is None else None
        if seen is not None and seen[0] == now:
            md5 = seen[1]
        elif entry is not None and len(entry) == 5 and tuple(entry[:4]) == now:
            md5 = str(entry[4])
        else:
            md5, stats[i] = _hash(top, rel, now)
            if memo is None and stats[i] != NEVER:
                hasher.cache.put(f"{key}/{rel}", now, md5)
        md5s.append(md5)
    return md5s, stats


@dataclass
class Scan:
    """A scanned directory: its files as a memo (names, md5s, hash when known, and what
    changed since an earlier state) and their total size."""

    memo: Memo
    size: int

    @property
    def entries(self) -> list[tuple[str, str]]:
        """(relpath, md5) of every file, in walk order."""
        return list(zip(self.memo.names, self.memo.md5s, strict=True))


def scan(hasher: Hasher, top: Path, want_tree: bool) -> Scan:
    """The directory's files (see Scan), answered from its memo where the files' stats are
    unchanged; with *want_tree*, also its hash ('<md5>.dir'). The memo is updated when
    anything differed."""
    from mlbuild.store.hashing import tree_manifest

    key = hasher.key(top)
    listing = gather(top, hasher.skip(top), not hasher.rules().has_patterns, key)
    memo = hasher.memo.load(key)
    if memo is not None and memo.names == listing.names:
        if memo.stats == listing.stats and (memo.tree is not None or not want_tree):
            return Scan(memo, listing.size)
        found = _from_memo(listing, memo, str(top))
    else:
        md5s, stats = _from_stat_cache(listing, hasher, key, memo)
        found = Memo(listing.names, stats, md5s)
    if want_tree:
        found.tree = tree_manifest(list(zip(found.names, found.md5s, strict=True)))[1]
        found.origin, found.diff = found.tree, {}
    hasher.memo.save(key, found)
    return Scan(found, listing.size)
