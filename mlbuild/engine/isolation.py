"""The isolation service: a scratch workspace holding a clean checkout of a revision, outside
the project, on the project's cache, removed when done (even on Ctrl-C or an error).

    with scratch_workspace(root) as ws:      # verify: a clean checkout of HEAD
        build(ws, RunRequest(force=True), record=False)

Users and their cache modes:

- `mlbuild verify` uses CacheMode.SEEDED: the workspace has a private cache, seeded with the
  objects its .dvc-tracked data and frozen outputs need, copied out of the project's cache
  (which is only read, under the project lock, so no gc removes them meanwhile); what the cache
  lacks is pulled from the remote. The rebuild can never write into the user's cache, and its
  run-cache is its own, so nothing is restored from a previous build.
- `mlbuild exp run` (experiments, to come) will use CacheMode.SHARED, one workspace per variant
  (with *revision* the commit it starts from, and the variant's overrides passed to the build):
  the workspace's cache.dir is the project's cache, so data is linked from it and never copied,
  and outputs land where `exp apply` finds them; the run-cache is then the shared one (a
  variant already built is restored, not rerun).

A workspace left behind by a process that was killed (its pid is gone) is removed by the next
scratch_workspace() call.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.errors import IntegrityError, UsageError
from mlbuild.gitrepo import GitError, git
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import is_object_id
from mlbuild.store.tracked import find_pointers

PREFIX = "mlbuild-verify-"


class CacheMode(StrEnum):
    """Which cache a scratch workspace builds on."""

    SEEDED = "seeded"  # a private cache, seeded read-only from the project's (verify)
    SHARED = "shared"  # the project's cache itself, nothing copied (experiments)


def _git(root: Path, *args: str) -> bytes:
    try:
        return git(root, *args)
    except GitError as exc:
        raise UsageError(
            f"verify needs a git repository with at least one commit ({root}): "
            f"git {' '.join(args)} failed"
        ) from exc


def revision(root: Path, rev: str = "HEAD") -> tuple[str, bool]:
    """The commit *rev* names and whether the work tree has uncommitted changes."""
    sha = _git(root, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    return sha, dirty


@contextmanager
def scratch_workspace(root: Path, revision: str = "HEAD", cache: CacheMode = CacheMode.SEEDED,
                      keep: bool = False, prefix: str = PREFIX) -> Iterator[Path]:
    """A clean checkout of *revision* outside the project, on the project's cache as *cache*
    says, with its .dvc-tracked data's objects at hand; removed on exit unless *keep*."""
    parent = _make(prefix)
    dest = parent / "ws"
    try:
        _checkout(root, dest, revision, root_cache(root) if cache == CacheMode.SHARED else None)
        _seed(root, dest, copy=cache == CacheMode.SEEDED)
        yield dest
    finally:
        if not keep:
            _remove(parent)


def root_cache(root: Path) -> Path:
    """The project's cache directory, absolute."""
    return Cache(root).dir.resolve()


def _checkout(root: Path, dest: Path, rev: str, cache_dir: Path | None) -> None:
    """Extract the tree of *rev* into *dest* (no .git, no cache, no ignored files), with its
    cache at *cache_dir* (None: a private one inside it)."""
    data = _git(root, "archive", "--format=tar", rev)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        _extract(tar, dest)
    (dest / ".dvc").mkdir(exist_ok=True)
    # config.local wins over a committed cache.dir: a shared cache the checkout names would
    # otherwise let a private rebuild write into the user's cache
    (dest / ".dvc" / "config.local").write_text(
        f"[cache]\n    dir = {cache_dir or 'cache'}\n", encoding="utf-8")
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


def _seed(root: Path, dest: Path, copy: bool) -> None:
    """Put the objects the checkout's .dvc-tracked data needs into its cache (copied out of
    the project's cache when *copy*; pulled from the remote when the project lacks them) and
    check out the outputs of frozen stages, which are never rebuilt."""
    from mlbuild.dvcfmt.repolock import repo_lock

    with repo_lock(root, announce=False):  # no `dvc gc` or build changes the cache meanwhile
        pulls = _seed_data(root, dest) if copy else []
        _seed_frozen(root, dest)
    if pulls:  # through the same verified fetch as `mlbuild pull`
        from mlbuild.store.tracked import restore_missing
        from mlbuild.store.transfer import pull_tracked

        cache = Cache(dest)
        outs = [o for o in find_pointers(dest, [], everything=True) if o.dvcfile in pulls]
        pull_tracked(dest, cache, outs)
        restore_missing(dest, outs, cache)


def _seed_data(root: Path, dest: Path) -> list[str]:
    """Copy the objects of .dvc-tracked data from the user's cache (read only) into the
    scratch cache; return the pointer files whose data must be pulled from the remote."""
    source, target = Cache(root, read_only=True), Cache(dest)
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


def _seed_frozen(root: Path, dest: Path) -> None:
    """Frozen stages are never rebuilt: check their recorded outputs out of the user's cache
    into the scratch workspace. One the cache lacks stays missing, and the rebuild reports
    that frozen stage as failed with its missing output named."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline
    from mlbuild.dvcfmt.lockfile import LockFile

    if not ((dest / "dvc.yaml").is_file() and (dest / "dvc.lock").is_file()):
        return  # nothing recorded, or a pipeline compiled only at build time
    source, target = Cache(root, read_only=True), Cache(dest)
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


def _remove(folder: Path, tries: int = 50) -> None:
    """Remove a workspace, again while something that was stopped a moment ago (a stage's
    last child, its trace written at exit) still adds files to it: give up after ~5 s (the
    next scratch_workspace() removes what is left once this process is gone)."""
    for _ in range(tries):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)


def _make(prefix: str) -> Path:
    """A fresh temporary directory outside the project, named with this pid; the ones a killed
    verify left behind (their pid is gone) are removed first."""
    from mlbuild.files.temp import alive

    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
