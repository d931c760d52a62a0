"""Hashing files and directories exactly as DVC 3 does (md5; directories via .dir manifests)."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from mlbuild.dvcfmt.dvcignore import IgnoreRules
from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.errors import IntegrityError
from mlbuild.files.layout import stat_key
from mlbuild.store.boundary import refuse_special
from mlbuild.store.dirmemo import DirMemo
from mlbuild.store.statcache import StatCache

BLOCK = 8 * 1024 * 1024


def md5_file(path: Path) -> str:
    """md5 of a file's bytes, read in large blocks."""
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as fobj:
        while chunk := fobj.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_manifest(entries: list[tuple[str, str]]) -> tuple[bytes, str]:
    """The .dir object of (relpath, md5) entries: its body, a JSON list of {md5, relpath}
    sorted by relpath (DVC's layout), and its id, '<md5 of the body>.dir'.

    The body is exactly json.dumps(items, sort_keys=True), written out directly: with
    10,000 entries building the dicts cost more than the hashing (md5s are plain hex, so
    only the relpath needs JSON escaping)."""
    import hashlib
    from json.encoder import encode_basestring_ascii as quote  # what json.dumps uses

    body = ("[" + ", ".join(f'{{"md5": "{md5}", "relpath": {quote(rel)}}}'
                            for rel, md5 in sorted(entries)) + "]").encode("ascii")
    return body, hashlib.md5(body, usedforsecurity=False).hexdigest() + ".dir"


_OBJECT_ID = re.compile(r"[0-9a-f]{32}(\.dir)?")


def is_object_id(text: object, dirs: bool = True) -> bool:
    """True for an md5 (or, with *dirs*, a '<md5>.dir'): anything else, joined to the cache
    directory as an object's name, could lead out of it ('../..', an absolute path)."""
    match = _OBJECT_ID.fullmatch(text) if isinstance(text, str) else None
    return match is not None and (dirs or not match.group(1))


def unsafe_relpath(rel: object) -> bool:
    """A manifest path that, joined to its directory, would not name a file inside it:
    absolute, with '..', '.' or empty parts, or a backslash (a separator on Windows)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return True
    return any(part in ("", ".", "..") for part in rel.split("/"))


def parse_manifest(body: bytes, where: Path) -> list[tuple[str, str]]:
    """(relpath, md5) entries of a .dir object's bytes, each checked: a path that leads out
    of the directory or an entry hash that is not an md5 raises IntegrityError naming the
    object (DVC itself would write such a path outside the project). Bad JSON: ValueError."""
    items = json.loads(body)
    fix = ("it was not checked out; run 'mlbuild data fsck --repair' to remove it, then pull "
           "or rebuild that output")
    if not isinstance(items, list):
        raise IntegrityError(f"directory manifest {where} is not a list of entries; {fix}")
    entries = []
    for idx, item in enumerate(items):
        rel = item.get("relpath") if isinstance(item, dict) else None
        md5 = item.get("md5") if isinstance(item, dict) else None
        if unsafe_relpath(rel):
            raise IntegrityError(f"directory manifest {where} lists an unsafe path "
                                 f"{json.dumps(rel)} (entry {idx}): it would be written outside "
                                 f"the directory; {fix}")
        if not is_object_id(md5, dirs=False):
            raise IntegrityError(f"directory manifest {where}: entry {idx} ({rel}): md5 "
                                 f"{json.dumps(md5)} is not an md5 hash; {fix}")
        entries.append((str(rel), str(md5)))
    return entries


def walk_files(top: Path, skip: Callable[[str, bool], bool] | None = None,
               ) -> list[tuple[str, Path]]:
    """All files under *top* as (posix relpath, path), less what skip(relpath, is_dir) rejects
    (a rejected directory is not entered)."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        rel = base.relative_to(top).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        dirnames[:] = sorted(d for d in dirnames if not (skip and skip(prefix + d, True)))
        for name in filenames:
            if not (skip and skip(prefix + name, False)):
                found.append((prefix + name, base / name))
    return found


class Hasher:
    """Hashes workspace paths, answering from the stat cache when the stat is unchanged."""

    def __init__(self, root: Path, cache: StatCache) -> None:
        self.root = root
        self.cache = cache
        self._ignore: IgnoreRules | None = None
        self._prefix = str(root) + os.sep
        # directories of many files are remembered whole, beside the stat cache (see dirmemo)
        self.memo = DirMemo(cache.path.parent / "dirs")

    def key(self, path: Path) -> str:
        """The stat-cache key: the path relative to the root (string slicing on the hot path)."""
        text = str(path)
        if text.startswith(self._prefix):
            return text[len(self._prefix):]
        return os.path.relpath(path, self.root)

    def rules(self) -> IgnoreRules:
        """The project's .dvcignore rules (read once)."""
        if self._ignore is None:
            self._ignore = IgnoreRules(self.root)
        return self._ignore

    def skip(self, top: Path) -> Callable[[str, bool], bool]:
        """What DVC leaves out of a directory under *top* (.dvcignore, .git and the like)."""
        rules, prefix = self.rules(), os.path.relpath(top, self.root).replace(os.sep, "/")
        return lambda rel, is_dir: rules.ignored(f"{prefix}/{rel}", is_dir)

    def _stat(self, path: Path) -> os.stat_result:
        """stat (following links) of a file about to be hashed; special files refused."""
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            refuse_special(path, st.st_mode, self.key(path))
        return st

    def file(self, path: Path) -> HashInfo:
        """Hash one file."""
        st = self._stat(path)
        key = stat_key(st)
        rel = self.key(path)
        md5 = self.cache.get(rel, key)
        if md5 is None:
            md5 = md5_file(path)
            self.cache.put(rel, key, md5)
        return HashInfo(md5=md5, size=st.st_size, isexec=bool(st.st_mode & stat.S_IXUSR))

    def cached(self, path: Path) -> HashInfo | None:
        """The file's hash if the stat cache knows it (no reading)."""
        st = self._stat(path)
        md5 = self.cache.get(self.key(path), stat_key(st))
        if md5 is None:
            return None
        return HashInfo(md5=md5, size=st.st_size, isexec=bool(st.st_mode & stat.S_IXUSR))

    def remember(self, path: Path, md5: str) -> HashInfo:
        """Record a hash computed elsewhere (while committing) for the file's current stat."""
        st = self._stat(path)
        self.cache.put(self.key(path), stat_key(st), md5)
        return HashInfo(md5=md5, size=st.st_size, isexec=bool(st.st_mode & stat.S_IXUSR))

    def directory(self, path: Path) -> tuple[HashInfo, list[tuple[str, str]]]:
        """Hash a directory; also returns its (relpath, md5) entries."""
        from mlbuild.store.dirscan import scan

        found = scan(self, path, want_tree=True)
        assert found.memo.tree is not None  # asked for
        return (HashInfo(md5=found.memo.tree, size=found.size, nfiles=len(found.memo.names)),
                found.entries)

    def scan(self, path: Path) -> tuple[list[tuple[str, str]], int]:
        """A directory's (relpath, md5) entries, in walk order, and their total size: its
        hash without the manifest (which a caller comparing entries need not build)."""
        from mlbuild.store.dirscan import scan

        found = scan(self, path, want_tree=False)
        return found.entries, found.size

    def path(self, relpath: str) -> HashInfo | None:
        """Hash a project-relative path; None when it does not exist."""
        full = self.root / relpath
        try:
            mode = full.stat().st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode):
            return self.directory(full)[0]
        return self.file(full)
