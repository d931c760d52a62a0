"""Committing files to the cache in one pass: each new file is opened once, read once into
memory, hashed, and its object written from those same bytes.

Why: a directory of 10,000 small files spends its commit on per-file bookkeeping (stat, open
to hash, open again to copy, a reflink attempt, chmod), not on reading. Writing the object
from the bytes that were hashed also makes integrity exact: an object is never stored under a
hash its content does not have, even if the file changes while it is read. The stat cache
learns a hash only when the file's stat is the same after the read as before it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.files.layout import StatKey, stat_key
from mlbuild.store.boundary import refuse_special

SMALL = 1024 * 1024  # files up to this size are read whole into memory
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_UNNAMED_FLAGS = os.O_WRONLY | getattr(os, "O_TMPFILE", 0) | getattr(os, "O_CLOEXEC", 0)
_TAG = f"{os.getpid()}-{os.urandom(3).hex()}"
_SERIAL = itertools.count()


def _new_tag() -> None:
    """A forked process names its temporary files by its own pid (mlbuild's resident server
    forks every command after importing this module)."""
    global _TAG, _SERIAL
    _TAG, _SERIAL = f"{os.getpid()}-{os.urandom(3).hex()}", itertools.count()


os.register_at_fork(after_in_child=_new_tag)


def _umask() -> int | None:
    """The process umask read without changing it (os.umask would, racing other threads);
    None when the kernel does not say (then every object is chmod-ed as before)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fobj:
            for line in fobj:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        return None
    return None


@functools.cache
def _needs_chmod() -> bool:
    """True when the umask would take read bits off a new object (asked once, when needed)."""
    mask = _umask()
    return mask is None or mask & 0o444 != 0


def _tmp_name(obj_name: str) -> str:
    """A temporary name in the object's folder that `tmp_beside`'s readers recognise
    (.<name>.<pid>-<12 hex>.tmp), without a random-number syscall per file."""
    return f".{obj_name}.{_TAG}{next(_SERIAL) & 0xFFFFFF:06x}.tmp"


@dataclass
class ObjectWriter:
    """Writes objects into one cache's files/md5 folder, making each prefix folder once."""

    files: Path
    link: bool = False  # commit by hard link (cache.type hardlink; see linkcommit)
    single: bool = False  # the file is an output itself, not in a directory (its x bit kept)
    unnamed: bool = bool(getattr(os, "O_TMPFILE", 0))  # try O_TMPFILE until it fails once
    _made: set[str] = field(default_factory=set)

    def has(self, md5: str) -> bool:
        """True when the object is in the cache."""
        return os.path.isfile(os.path.join(self.files, md5[:2], md5[2:]))  # noqa: PTH113, PTH118

    def obj_path(self, md5: str) -> str:
        """Where the object of *md5* lives, as a string."""
        return os.path.join(self.files, md5[:2], md5[2:])  # noqa: PTH118

    def folder(self, obj: str) -> None:
        """Make the prefix folder of the object path *obj* (once per writer)."""
        folder, prefix = os.path.split(obj)[0], os.path.basename(os.path.dirname(obj))  # noqa: PTH119, PTH120
        if prefix not in self._made:
            os.makedirs(folder, exist_ok=True)  # noqa: PTH103
            self._made.add(prefix)

    def write(self, md5: str, data: bytes) -> None:
        """Store *data* (whose md5 is *md5*) unless the object is already there."""
        folder = os.path.join(self.files, md5[:2])  # noqa: PTH118 - strings on the hot path
        obj = os.path.join(folder, md5[2:])  # noqa: PTH118
        if os.path.isfile(obj):  # noqa: PTH113
            return
        if md5[:2] not in self._made:
            os.makedirs(folder, exist_ok=True)  # noqa: PTH103
            self._made.add(md5[:2])
        if self.unnamed and self._write_unnamed(folder, obj, data):
            return
        tmp = os.path.join(folder, _tmp_name(md5[2:]))  # noqa: PTH118
        fd = os.open(tmp, _NEW_FLAGS, 0o444)
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, obj)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # noqa: PTH108 - strings on the hot path
            raise

    def _write_unnamed(self, folder: str, obj: str, data: bytes) -> bool:
        """Write the object as an unnamed file and link it in whole (Linux O_TMPFILE): one
        directory change instead of a create and a rename, and a crash leaves nothing.
        False (and never again for this writer) where the filesystem or /proc refuses."""
        try:
            fd = os.open(folder, _UNNAMED_FLAGS, 0o444)
        except OSError:
            self.unnamed = False
            return False
        try:
            _write_all(fd, data)
            try:
                os.link(f"/proc/self/fd/{fd}", obj, src_dir_fd=root_fd(),
                        follow_symlinks=True)
            except FileExistsError:
                pass  # stored meanwhile by another writer: the same content
            except (OSError, NotImplementedError):
                self.unnamed = False
                return False
            return True
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of *data* and leave the file read-only, as DVC protects cache objects."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if _needs_chmod():
        os.fchmod(fd, 0o444)


_ROOT_FD: list[int] = []


def root_fd() -> int:
    """A directory descriptor (any will do: the link source is an absolute path), so that
    os.link calls linkat, which can follow /proc/self/fd/N to the unnamed file."""
    if not _ROOT_FD:
        _ROOT_FD.append(os.open("/", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
    return _ROOT_FD[0]


def read_whole(fd: int, size: int) -> bytes:
    """Everything in an open file (read to its end, even if it grew since its stat)."""
    parts = [os.read(fd, size + 1)]
    if len(parts[0]) <= size:  # a short read of a regular file is its end
        return parts[0]
    while chunk := os.read(fd, 1024 * 1024):
        parts.append(chunk)
    return b"".join(parts)


@dataclass(frozen=True)
class Read:
    """What one pass over a file found: its md5 and size, and the stat it had throughout
    (None when it changed while being read, so that nothing remembers the hash for it)."""

    md5: str
    size: int
    key: StatKey | None
    isexec: bool = False


Known = Callable[[StatKey], "str | None"]


def commit_small(path: str, shown: str, known: Known, has: Callable[[str], bool],
                 writer: ObjectWriter) -> Read | None:
    """Hash and store one file in a single open; None when it is bigger than SMALL (the
    caller streams it). *known* answers the stat cache for its stat key; *shown* names the
    file in an error."""
    fd, before = open_checked(path, shown)
    try:
        key, isexec = stat_key(before), bool(before.st_mode & stat.S_IXUSR)
        md5 = known(key)
        if md5 is not None and has(md5):  # unchanged and committed: nothing to read
            return Read(md5, before.st_size, key, isexec)
        if before.st_size > SMALL:
            return None
        data = read_whole(fd, before.st_size)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        writer.write(md5, data)
        same = stat_key(os.fstat(fd)) == key and len(data) == before.st_size
        return Read(md5, len(data), key if same else None, isexec)
    finally:
        os.close(fd)


def open_checked(path: str, shown: str) -> tuple[int, os.stat_result]:
    """Open a file to commit and fstat it; anything but a regular file is refused (named by
    *shown*) before it is read."""
    try:
        fd = os.open(path, _OPEN_FLAGS)  # O_NONBLOCK: a FIFO is refused, not waited on
    except OSError:
        refuse_special(path, Path(path).stat().st_mode, shown)  # a socket cannot be opened
        raise
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            refuse_special(path, before.st_mode, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd, before
