"""Isolated scratch workspaces: a clean checkout of the current revision, outside the project."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.errors import IntegrityError, UsageError
from mlbuild.gitrepo import GitError, git
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import is_object_id
from mlbuild.store.tracked import find_pointers


def _git(root: Path, *args: str) -> bytes:
    try:
        return git(root, *args)
    except GitError as exc:
        raise UsageError(
            f"verify needs a git repository with at least one commit ({root}): "
            f"git {' '.join(args)} failed"
        ) from exc


def revision(root: Path) -> tuple[str, bool]:
    """The HEAD commit and whether the work tree has uncommitted changes."""
    sha = _git(root, "rev-parse", "HEAD").decode().strip()
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    return sha, dirty


def checkout(root: Path, dest: Path) -> None:
    """Extract the HEAD tree of *root* into *dest* (no .git, no cache, no ignored files)."""
    data = _git(root, "archive", "--format=tar", "HEAD")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        _extract(tar, dest)
    (dest / ".dvc").mkdir(exist_ok=True)
    # a committed cache.dir (a shared cache) would let the rebuild write into the user's cache
    (dest / ".dvc" / "config.local").write_text("[cache]\n    dir = cache\n", encoding="utf-8")
    git(dest, "init", "-q")


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract with the stdlib's "data" filter, or (Python 3.11.0-3.11.3, which lack
    extraction filters) after the same checks done here: nothing may land outside *dest*."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        link = (target.parent / member.linkname).resolve() if member.issym() else None
        if member.islnk():
            link = (root / member.linkname).resolve()
        for path in (target, link):
            if path is not None and not path.is_relative_to(root):
                raise UsageError(f"verify: the committed tree has {member.name!r}, "
                                 "which points outside the workspace")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            continue  # devices and FIFOs are never part of a rebuild
        member.mode &= 0o755 if member.isdir() or member.mode & 0o100 else 0o644
        tar.extract(member, dest)  # safe: every member was checked above


def seed_data(root: Path, dest: Path) -> list[str]:
    """Copy the objects of .dvc-tracked data from the user's cache (read only) into the
    scratch cache; return the pointer files whose data must be pulled from the remote."""
    source, target = Cache(root), Cache(dest)
    missing = []
    for out in find_pointers(dest, [], everything=True):
        if source.complete(out.info):
            _copy_object(source, target, out.info)
        else:
            missing.append(out.dvcfile)
    return sorted(set(missing))


def _copy_object(source: Cache, target: Cache, info: HashInfo) -> None:
    md5s = [info.md5]
    if info.isdir:
        md5s += [md5 for _, md5 in source.manifest(info.md5)]
    for md5 in md5s:
        if not is_object_id(md5):  # a crafted .dvc file's 'md5: ab/../..' names no object
            raise IntegrityError(f"'{md5}' recorded for {info.md5} is not an md5 hash; "
                                 "nothing was copied into the verify workspace")
        obj = target.object_path(md5)
        if not obj.exists():
            obj.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.object_path(md5), obj)


def seed_frozen(root: Path, dest: Path) -> None:
    """Frozen stages are never rebuilt: check their recorded outputs out of the user's cache
    into the scratch workspace. One the cache lacks stays missing, and the rebuild reports
    that frozen stage as failed with its missing output named."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline
    from mlbuild.dvcfmt.lockfile import LockFile

    if not ((dest / "dvc.yaml").is_file() and (dest / "dvc.lock").is_file()):
        return  # nothing recorded, or a pipeline compiled only at build time
    source, target = Cache(root), Cache(dest)
    lock = LockFile(dest)
    for stage in load_pipeline(dest).stages.values():
        entry = lock.get(stage.name)
        if not stage.frozen or entry is None:
            continue
        for out in stage.outs:
            info = entry.outs.get(out.def_path)
            if info is None or (dest / out.path).exists():
                continue
            if source.complete(info):
                _copy_object(source, target, info)
                target.checkout(info, dest / out.path)


PREFIX = "mlbuild-verify-"


def make(prefix: str = PREFIX) -> Path:
    """A fresh temporary directory outside the project, named with this pid; the ones a killed
    verify left behind (their pid is gone) are removed first."""
    from mlbuild.files.temp import alive

    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
