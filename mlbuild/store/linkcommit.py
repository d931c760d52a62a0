"""Committing a file by hard-linking it into the cache, as DVC does when `cache.type` puts
`hardlink` first: the object is the workspace file's own inode, made read-only (DVC's
protection), so a commit of 10,000 small files creates no file and writes no data.

Why it keeps the cache's integrity: the file is hashed from one open descriptor and that very
inode is linked (through /proc/self/fd), so a file renamed over it meanwhile cannot slip in.
A file written while it was read is caught by its modification time, which the kernel moves
on every write, but (before Linux's fine-grained stamps) only in ticks of up to 10 ms: a
file whose stamp is less than FRESH_NS older than the moment it was opened (a write within
the same tick would not move the stamp) is stored as a copy of the bytes that were hashed
instead, as is every file whose stamp moved. After a whole directory is committed, `recheck`
looks at every linked object once more and removes the ones written since, so that no object
outlives a change under its hash. (After the commit, the object is the workspace file: a
change to it is DVC's own hazard of cache.type hardlink, which its read-only mode guards.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlbuild.files.layout import stat_key
from mlbuild.store.onepass import (
    SMALL,
    Known,
    ObjectWriter,
    Read,
    open_checked,
    read_whole,
    root_fd,
)

FRESH_NS = 20_000_000  # younger files are copied: mtime moves in ticks of up to 10 ms
_CHUNK = 1024 * 1024
# errors that say this filesystem (or this pair of folders) cannot hard-link: copy instead
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP,
            errno.ENOSYS, errno.EINVAL, errno.EACCES}


@dataclass(frozen=True)
class Linked:
    """A linked object and the stamp its file had once protected (for the final recheck)."""

    obj: str
    ino: int
    mtime_ns: int
    size: int
    mode: int  # the file's mode before it was protected, given back if its link is undone


def link_types(types: list[str]) -> bool:
    """True when the cache links by hardlink on commit: DVC does so exactly when `hardlink`
    is the first of cache.type (dvc/output.py, Output.commit)."""
    return types[:1] == ["hardlink"]


def _hash_fd(fd: int, size: int) -> tuple[str, bytes | None]:
    """md5 of an open file; its bytes too when small enough to keep for a copy."""
    if size <= SMALL:
        data = read_whole(fd, size)
        return hashlib.md5(data, usedforsecurity=False).hexdigest(), data
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := os.read(fd, _CHUNK):
        digest.update(chunk)
    return digest.hexdigest(), None


def commit_linked(path: str, shown: str, known: Known, has: Callable[[str], bool],
                  writer: ObjectWriter, linked: list[Linked]) -> Read | None:
    """Hash one file and make it its cache object by a hard link (appended to *linked*).

    Falls back to a copy of the hashed bytes (small files) or to None (big ones: the caller
    streams a copy) when the file is too fresh to link safely, changed while read, or the
    filesystem refuses the link.
    """
    started = time.time_ns()  # before the stat: see FRESH_NS
    fd, before = open_checked(path, shown)
    try:
        key, isexec = stat_key(before), bool(before.st_mode & stat.S_IXUSR)
        md5 = known(key)
        if md5 is not None and has(md5):  # unchanged and committed: nothing to read
            return Read(md5, before.st_size, key, isexec)
        md5, data = _hash_fd(fd, before.st_size)
        # an empty file is never linked (DVC's LocalFileSystem.link): all share one object,
        # and ext4 allows 65,000 links to an inode
        if (has(md5) or not writer.link or not before.st_size
                or started - before.st_mtime_ns < FRESH_NS):
            return _copied(fd, md5, data, before, writer, isexec)
        obj = writer.obj_path(md5)
        if not _link(fd, obj, writer):
            return _copied(fd, md5, data, before, writer, isexec)
        # DVC's protection; a file output keeps its owner's x bit (DVC's set_exec), a file in
        # a directory does not (a .dir manifest has no isexec)
        protect(fd, 0o444 | (stat.S_IXUSR if isexec and writer.single else 0))
        after = os.fstat(fd)
        if after.st_mtime_ns != before.st_mtime_ns or after.st_size != before.st_size:
            unlink_if(obj, before.st_ino, before.st_mode)  # written while read: other bytes?
            return _copied(fd, md5, data, before, writer, isexec, same=False)
        linked.append(Linked(obj, after.st_ino, after.st_mtime_ns, after.st_size,
                             before.st_mode))
        return Read(md5, before.st_size, stat_key(after), isexec)
    finally:
        os.close(fd)


def _copied(fd: int, md5: str, data: bytes | None, before: os.stat_result,
            writer: ObjectWriter, isexec: bool, same: bool = True) -> Read | None:
    """Store the hashed bytes as a new object (the one-pass way). A big file (whose bytes
    were not kept) is None, for the caller to stream, unless its object is there already."""
    unchanged = same and stat_key(os.fstat(fd)) == stat_key(before)
    key = stat_key(before) if unchanged else None
    if data is None:
        return Read(md5, before.st_size, key, isexec) if unchanged and writer.has(md5) else None
    writer.write(md5, data)
    return Read(md5, len(data), key, isexec)


def _link(fd: int, obj: str, writer: ObjectWriter) -> bool:
    """Link the open file's inode at *obj*; False (and no more links by this writer when
    the filesystem cannot) when it did not."""
    writer.folder(obj)
    try:
        # linkat (as a directory fd makes os.link call) follows /proc/self/fd/N to the inode
        os.link(f"/proc/self/fd/{fd}", obj, src_dir_fd=root_fd(), follow_symlinks=True)
    except FileExistsError:
        return False  # stored meanwhile by another writer: keep the workspace file apart
    except OSError as exc:
        if exc.errno in _NO_LINK or not os.path.isdir("/proc/self/fd"):  # noqa: PTH112
            writer.link = False
        return False
    return True


def protect(fd: int, mode: int) -> None:
    """Make the object (and so the workspace file, the same inode) read-only, as DVC does; a
    filesystem that refuses is not fatal, as in DVC."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, mode)


def unlink_if(obj: str, ino: int, mode: int) -> None:
    """Remove the object at *obj* if it is still the inode *ino* (a workspace file of ours),
    giving that file back its *mode*: it is no cache object any more. The object goes even
    when its mode cannot be given back (a file of another user's): it may no longer hold the
    content its name says."""
    try:
        if os.stat(obj).st_ino != ino:  # noqa: PTH116 - strings on the hot path
            return
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.chmod(obj, stat.S_IMODE(mode))  # noqa: PTH101
    with contextlib.suppress(OSError):
        os.unlink(obj)  # noqa: PTH108


def recheck(linked: list[Linked]) -> list[str]:
    """Remove every linked object whose file was written after it was linked; return their
    paths (the caller stores those files again or fails the commit)."""
    gone = []
    for item in linked:
        try:
            st = os.stat(item.obj)  # noqa: PTH116
        except OSError:
            gone.append(item.obj)
            continue
        if st.st_ino == item.ino and (st.st_mtime_ns, st.st_size) != (item.mtime_ns,
                                                                        item.size):
            unlink_if(item.obj, item.ino, item.mode)
            gone.append(item.obj)
    return gone
