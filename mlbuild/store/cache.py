"""DVC's content-addressed cache (.dvc/cache/files/md5): commit, check and checkout."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mlbuild.dvcfmt.dvcconfig import cache_dir, cache_types
from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.errors import IntegrityError
from mlbuild.files.layout import StatKey, stat_key, state_dir
from mlbuild.files.temp import tmp_beside
from mlbuild.store.boundary import ensure_inside
from mlbuild.store.completememo import CompleteMemo, now
from mlbuild.store.hashing import Hasher, md5_file
from mlbuild.store.onepass import SMALL, ObjectWriter, Read

FICLONE = 0x40049409  # Linux ioctl that makes a copy-on-write clone (reflink)
INGEST_MIN = SMALL + 1  # files this big are copied while being hashed (one read)


def _reflink(src: Path, dst: Path) -> None:
    import fcntl

    with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        try:
            fcntl.ioctl(fdst.fileno(), FICLONE, fsrc.fileno())
        except OSError:
            fdst.close()
            dst.unlink(missing_ok=True)
            raise


def _copy_while_hashing(src: Path, dst: Path) -> str:
    """Copy src to dst in the kernel (copy_file_range/sendfile) on a second thread while this
    one hashes it: the two passes overlap, and the file was just written so both read from
    the page cache. The copy is checked by size; the caller renames it once the hash is known."""
    import threading

    errors: list[BaseException] = []

    def copy() -> None:
        try:
            shutil.copyfile(src, dst)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    md5 = md5_file(src)
    worker.join()
    if errors:
        raise errors[0]
    if dst.stat().st_size != src.stat().st_size:
        raise OSError(f"copy of {src} to the cache is incomplete")
    return md5


def _place(src: Path, dst: Path, kind: str) -> None:
    if kind == "reflink":
        _reflink(src, dst)
    elif kind == "hardlink":
        if src.stat().st_size:
            os.link(src, dst)
        else:  # as DVC: empty files share one object, and an inode's links are limited
            dst.touch(exist_ok=False)
    elif kind == "symlink":
        os.symlink(src, dst)
    elif kind == "copy":
        shutil.copyfile(src, dst)
    else:
        raise OSError(errno.EINVAL, f"unknown cache type {kind}")


class Cache:
    """The project's local DVC cache."""

    def __init__(self, root: Path, read_only: bool = False) -> None:
        """*read_only*: a caller that must leave the project untouched (verify reading the
        user's cache), so the completeness memo is consulted but never written."""
        self.root = root
        self.dir = cache_dir(root)
        self.files = self.dir / "files" / "md5"
        self.types = cache_types(root)
        # How an object's content is hashed before it is checked out (the workspace plugs in
        # its stat-cached hasher so unchanged objects are not reread).
        self.verifier: Callable[[Path], str] = md5_file
        self._memo = CompleteMemo(state_dir(root) / "complete.json", self.files,
                                  writable=not read_only)

    def writer(self) -> ObjectWriter:
        """A writer of new objects; it links workspace files in when cache.type says so."""
        from mlbuild.store.linkcommit import link_types  # only a commit needs it

        return ObjectWriter(self.files, link=link_types(self.types))

    def object_path(self, md5: str) -> Path:
        """Where an object with this hash lives."""
        return self.files / md5[:2] / md5[2:]

    def has_md5(self, md5: str) -> bool:
        """True when an object with this hash is in the cache."""
        return self.object_path(md5).is_file()

    def has(self, info: HashInfo) -> bool:
        """True when the object (and, for a directory, its manifest) is in the cache."""
        return self.object_path(info.md5).is_file()

    def _tmp(self, obj: Path) -> Path:
        obj.parent.mkdir(parents=True, exist_ok=True)
        return tmp_beside(obj)

    def ingest(self, src: Path) -> Read:
        """Hash a big file and store it in one pass over its bytes.

        The copy is written while hashing (a reflink is tried first: then only the hash
        reads the data), so committing a fresh output costs about one read and one write.
        The two passes read separately: if the file's stat changed meanwhile, the stored
        copy is hashed instead, so the object always has the hash it is stored under (and
        the result carries no stat key: nobody may remember that hash for the file).
        """
        staging = tmp_beside(self.files / "x", "ingest")
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            before = src.stat()
            try:
                _reflink(src, staging)
                md5 = md5_file(src)
            except OSError:
                md5 = _copy_while_hashing(src, staging)
            key: StatKey | None = stat_key(before)
            if stat_key(src.stat()) != key:
                md5, key = md5_file(staging), None
            size = staging.stat().st_size  # of the content hashed
            obj = self.object_path(md5)
            if not obj.exists():
                obj.parent.mkdir(parents=True, exist_ok=True)
                staging.chmod(0o444)
                os.replace(staging, obj)
        finally:
            staging.unlink(missing_ok=True)
        return Read(md5, size, key, bool(before.st_mode & 0o100))

    def store(self, path: Path, hasher: Hasher) -> HashInfo:
        """Hash and commit a workspace file or directory (the .dir manifest last)."""
        from mlbuild.store.commit import store_file, store_tree

        if path.is_dir():
            return store_tree(self, path, hasher)
        return store_file(self, path, hasher)

    def add_bytes(self, body: bytes, md5: str) -> None:
        """Store an in-memory object (a .dir manifest)."""
        obj = self.object_path(md5)
        if obj.exists():
            return
        tmp = self._tmp(obj)
        try:
            tmp.write_bytes(body)
            tmp.chmod(0o444)
            os.replace(tmp, obj)
        finally:
            tmp.unlink(missing_ok=True)

    def manifest(self, md5: str) -> list[tuple[str, str]]:
        """(relpath, md5) entries of a .dir object; one that would lead out of its directory
        raises IntegrityError naming the object (every reader comes through here)."""
        from mlbuild.store.hashing import parse_manifest

        path = self.object_path(md5)
        return parse_manifest(path.read_bytes(), path)

    def file_of(self, ref: str) -> Path | None:
        """The cache file of an md5, or of '<dir md5>/<rel>' (a file inside a directory, as
        dvc.lock records one a stage names inside a tracked directory); None when absent."""
        if "/" in ref:
            folder, rel = ref.split("/", 1)
            if not self.has_md5(folder):
                return None
            entry = dict(self.manifest(folder)).get(rel)
            return self.object_path(entry) if entry and self.has_md5(entry) else None
        return self.object_path(ref) if self.has_md5(ref) else None

    def complete(self, info: HashInfo) -> bool:
        """The object and, for a directory, every file it lists are present (a directory
        found so before is answered from the memo while its objects' folders are unchanged)."""
        if not self.has(info):
            return False
        if not info.isdir:
            return True
        if self._memo.known(info.md5):
            return True
        try:
            entries = self.manifest(info.md5)
        except (OSError, ValueError, KeyError):
            return False
        taken = now()
        stamps = self._memo.stamps({md5[:2] for _, md5 in entries})  # before the check
        top = str(self.files)
        if not all(os.path.isfile(f"{top}/{md5[:2]}/{md5[2:]}")  # noqa: PTH113
                   for _, md5 in entries):
            return False
        if stamps is not None:
            self._memo.learn(info.md5, stamps, taken)
        return True

    def _checkout_file(self, md5: str, dst: Path, kinds: list[str] | None = None,
                       checked: set[Path] | None = None) -> None:
        src = self.object_path(md5)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if checked is not None and dst.parent not in checked:  # a directory's file
            ensure_inside(self.root, dst)  # the last guard, once per directory
            checked.add(dst.parent)
        tmp = tmp_beside(dst)
        kinds = kinds or self.types
        try:
            for kind in kinds:
                try:
                    _place(src, tmp, kind)
                    break
                except OSError:
                    tmp.unlink(missing_ok=True)
            else:
                shutil.copyfile(src, tmp)
            if kinds[:1] in (["copy"], ["reflink"]) or not tmp.is_symlink():
                with contextlib.suppress(OSError):
                    if tmp.stat().st_nlink == 1:
                        tmp.chmod(0o644)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial file beside the output
            raise

    def verify(self, info: HashInfo) -> list[tuple[str, str]]:
        """Check that the object (and every file of a directory) matches its hash; return the
        directory's entries. A mismatch raises IntegrityError naming the object."""
        self._verify_one(info.md5)
        if not info.isdir:
            return []
        entries = self.manifest(info.md5)
        for _, md5 in entries:
            self._verify_one(md5)
        return entries

    def _verify_one(self, md5: str) -> None:
        path = self.object_path(md5)
        actual = self.verifier(path)
        if actual != md5.removesuffix(".dir"):
            raise IntegrityError(
                f"cache object {path} is corrupted: expected md5 {md5.removesuffix('.dir')}, "
                f"found {actual}; it was not checked out (run 'mlbuild data fsck --repair', "
                "then pull or rebuild)"
            )

    def checkout(self, info: HashInfo, dst: Path, private: bool = False) -> None:
        """Materialise an object at *dst*, replacing what is there, after verifying it.

        *private* (for cache: false outputs, which git tracks) never links into the cache.
        """
        ensure_inside(self.root, dst)  # never restore through a link out of the project
        entries = self.verify(info)
        remove(dst)
        kinds = ["reflink", "copy"] if private else None
        if not info.isdir:
            self._checkout_file(info.md5, dst, kinds)
            if info.isexec and not dst.is_symlink():  # dvc.lock's isexec, as DVC restores it
                dst.chmod(dst.stat().st_mode | 0o111)
            return
        dst.mkdir(parents=True, exist_ok=True)
        checked: set[Path] = set()
        for rel, md5 in entries:  # manifest() refused any rel leading out of dst
            self._checkout_file(md5, dst / rel, kinds, checked)


def remove(path: Path) -> None:
    """Remove a file, link or directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def unprotect(path: Path) -> None:
    """Make an output safe to change in place, as DVC does before running a persistent one.

    A symlink or hardlink into the cache becomes a private writable copy, so a command that
    appends to the output cannot change the cached object.
    """
    if path.is_dir() and not path.is_symlink():
        files = [p for p in path.rglob("*") if p.is_file() or p.is_symlink()]
    else:
        files = [path] if path.exists() else []
    for file in files:
        if file.is_symlink() or file.lstat().st_nlink > 1:
            tmp = tmp_beside(file)
            try:
                shutil.copyfile(file, tmp)
                tmp.replace(file)
            finally:
                tmp.unlink(missing_ok=True)
        file.chmod(file.stat().st_mode | 0o200)
