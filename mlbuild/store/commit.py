"""Committing a workspace file or directory to the cache: hash it and store it, each new
file read once (see onepass), a big directory's small files in two processes (see sidecommit)
and its big files on a few threads, its .dir manifest last."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.store import sidecommit
from mlbuild.store.dirmemo import NEVER, Memo
from mlbuild.store.hashing import Hasher, tree_manifest
from mlbuild.store.linkcommit import Linked, commit_linked, recheck
from mlbuild.store.onepass import ObjectWriter, Read, commit_small

if TYPE_CHECKING:
    from mlbuild.store.cache import Cache

# Big files are hashed on a few threads (hashlib releases the GIL on large blocks). Small
# ones are not: measured on ext4, threads creating objects side by side were slower than one
# (the kernel's directory locks and the GIL), so they go one after another. Measured again
# in issue 17 round two c: two threads committing 10,000 files doubled the CPU time (ext4's
# inode allocation spins on shared bitmaps) without a shorter wall clock in `bench` W4. A
# second process does scale: sidecommit.
THREADS = min(4, os.cpu_count() or 1)
RELINKS = 3  # commits by link tried before copying (files kept being written meanwhile)
Item = tuple[str, str, str]  # (manifest relpath, full path, stat-cache key)


def walk(top: Path, hasher: Hasher) -> list[Item]:
    """Every file under *top* DVC would hash (.dvcignore applied), as plain strings."""
    skip = hasher.skip(top)
    top_s = str(top)
    base = hasher.key(top) + os.sep
    found: list[Item] = []
    for dirpath, dirnames, filenames in os.walk(top_s):
        rel_dir = dirpath[len(top_s) + 1:]
        prefix = rel_dir.replace(os.sep, "/") + "/" if rel_dir else ""
        dirnames[:] = sorted(d for d in dirnames if not skip(prefix + d, True))
        key_dir = base + (rel_dir + os.sep if rel_dir else "")
        sep_dir = dirpath + os.sep
        found.extend((prefix + name, sep_dir + name, key_dir + name)
                     for name in filenames if not skip(prefix + name, False))
    return found


def commit_one(hasher: Hasher, writer: ObjectWriter, full: str, key: str,
               shown: str, linked: list[Linked] | None = None) -> Read | None:
    """Hash and store one small file (or link any file, see linkcommit, when the writer
    links and *linked* collects the links); remember its hash when it did not change while
    read. None when it must be streamed (see commit_big)."""
    get = hasher.cache.get
    if writer.link and linked is not None:
        read = commit_linked(full, shown, lambda skey: get(key, skey), writer.has, writer,
                             linked)
    else:
        read = commit_small(full, shown, lambda skey: get(key, skey), writer.has, writer)
    if read is not None and read.key is not None:
        hasher.cache.put(key, read.key, read.md5)
    return read


def commit_big(cache: Cache, hasher: Hasher, full: str, key: str) -> Read:
    """Hash and store a big file, streamed (copied while hashed)."""
    read = cache.ingest(Path(full))
    if read.key is not None:
        hasher.cache.put(key, read.key, read.md5)
    return read


def store_file(cache: Cache, path: Path, hasher: Hasher) -> HashInfo:
    """Hash and commit one file."""
    key = hasher.key(path)
    for _ in range(RELINKS):
        linked: list[Linked] = []
        writer = cache.writer()
        writer.single = True
        read = (commit_one(hasher, writer, str(path), key, key, linked)
                or commit_big(cache, hasher, str(path), key))
        if not recheck(linked):
            return HashInfo(md5=read.md5, size=read.size, isexec=read.isexec)
    return _copied(cache, path, hasher)


def _copied(cache: Cache, path: Path, hasher: Hasher) -> HashInfo:
    """Commit by copies after the links kept being written to (see RELINKS)."""
    writer = cache.writer()
    writer.link = False
    if path.is_dir():
        info = _store_tree(cache, path, hasher, writer, None)
        assert info is not None  # only a linking commit gives up
        return info
    key = hasher.key(path)
    read = (commit_one(hasher, writer, str(path), key, key)
            or commit_big(cache, hasher, str(path), key))
    return HashInfo(md5=read.md5, size=read.size, isexec=read.isexec)


def _in_threads(items: list[Item], work: Callable[[Item], Read]) -> list[Read]:
    """work() over a few items (big files) on THREADS threads."""
    if THREADS < 2 or len(items) < 2:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(work, items))


def store_tree(cache: Cache, top: Path, hasher: Hasher) -> HashInfo:
    """Hash and commit a directory: every file, then its .dir manifest, written once.

    With linking, the manifest is written only once no linked file was written after its
    link (the objects of those that were are gone again): otherwise all is committed anew,
    unchanged files answered from the stat cache, the rewritten ones copied as now fresh.
    """
    for _ in range(RELINKS):
        linked: list[Linked] = []
        info = _store_tree(cache, top, hasher, cache.writer(), linked)
        if info is not None:
            return info
    return _copied(cache, top, hasher)


def _commit_items(hasher: Hasher, writer: ObjectWriter, items: list[Item], shown: str,
                  linked: list[Linked] | None) -> list[Read | None]:
    """commit_one() over a directory's files; with many of them, a helper process commits
    the second half meanwhile (see sidecommit), and what it could not is committed here."""
    cut = len(items)
    if sidecommit.worth_it(len(items), writer.link):
        cut = len(items) // 2
    if cut == len(items):
        return [commit_one(hasher, writer, full, key, f"{shown}/{rel}", linked)
                for rel, full, key in items]
    table = hasher.cache.table()
    known = {full: entry for _, full, key in items[cut:] if (entry := table.get(key)) is not None}
    with sidecommit.Helper(writer, [full for _, full, _ in items[cut:]], known) as helper:
        reads = [commit_one(hasher, writer, full, key, f"{shown}/{rel}", linked)
                 for rel, full, key in items[:cut]]
        answers = helper.answers()
    for (rel, full, key), answer in zip(items[cut:], answers, strict=True):
        if answer is False:  # failed there (or no helper): here, with the error it raises
            reads.append(commit_one(hasher, writer, full, key, f"{shown}/{rel}", linked))
            continue
        read = sidecommit.as_read(answer)
        if read is not None and read.key is not None:
            hasher.cache.put(key, read.key, read.md5)
        reads.append(read)
    return reads


def _store_tree(cache: Cache, top: Path, hasher: Hasher, writer: ObjectWriter,
                linked: list[Linked] | None) -> HashInfo | None:
    items = walk(top, hasher)
    shown = hasher.key(top)
    reads = _commit_items(hasher, writer, items, shown, linked)
    big = [i for i, read in enumerate(reads) if read is None]
    done = _in_threads([items[i] for i in big],
                       lambda item: commit_big(cache, hasher, item[1], item[2]))
    for i, read in zip(big, done, strict=True):
        reads[i] = read
    final = [read for read in reads if read is not None]
    if linked and recheck(linked):
        return None
    names, md5s = [rel for rel, _, _ in items], [read.md5 for read in final]
    body, md5 = tree_manifest(list(zip(names, md5s, strict=True)))
    cache.add_bytes(body, md5)
    del body, items  # 100,000 entries: not alive while the memo is written (peak memory)
    # the next status of this directory answers from here (a stat that moved while its file
    # was read is NEVER: that file is read again)
    hasher.memo.save(hasher.key(top), Memo(names, [read.key or NEVER for read in final], md5s,
                                           md5, md5))
    return HashInfo(md5=md5, size=sum(r.size for r in final), nfiles=len(final))
