"""Data versioning through DVC itself: add, push, pull, cloud status and used objects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlbuild.errors import BadInputError, MlbuildError, did_you_mean


class RemoteError(MlbuildError):
    """A transfer to or from a DVC remote failed (exit 1)."""

    exit_code = 1


@contextmanager
def _repo(root: Path) -> Iterator[Any]:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from mlbuild.dvcfmt.dvcbridge import share_lock

    try:
        repo = share_lock(Repo(str(root)), root)
        repo.scm_context.quiet = True  # mlbuild prints its own "commit it with git" hint
    except DvcException as exc:
        raise BadInputError(f"not a DVC repository: {' '.join(str(exc).split())}") from exc
    try:
        yield repo
    except DvcException as exc:
        message = " ".join(str(exc).split())
        if "remote" in message.lower() and "no remote" in message.lower():
            raise BadInputError(f"{message} (set one with 'dvc remote add -d NAME URL')") from exc
        raise RemoteError(message) from exc
    finally:
        repo.close()


def check_remote(root: Path, name: str | None) -> None:
    """An unknown remote name is the user's mistake (exit 2), answered with the closest one."""
    if name is None:
        return
    from mlbuild.dvcfmt.dvcconfig import remote_names

    names = remote_names(root)
    if name not in names:
        known = f"configured: {', '.join(names)}" if names else "none is configured"
        raise BadInputError(f"unknown DVC remote '{name}'{did_you_mean(name, names)} "
                            f"({known}; add one with 'dvc remote add NAME URL')")


def add(root: Path, paths: list[str]) -> list[str]:
    """Track files or directories like `dvc add`; returns the .dvc files written."""
    with _repo(root) as repo:
        stages = repo.add(paths)
    return sorted(str(Path(s.path).relative_to(root)) for s in stages)


def push(root: Path, targets: list[str] | None, remote: str | None) -> int:
    """Push data, stage outputs and the run-cache; returns the number of objects sent."""
    check_remote(root, remote)
    with _repo(root) as repo:
        return int(repo.push(targets=targets or None, remote=remote, run_cache=True) or 0)


def fetch(root: Path, targets: list[str] | None, remote: str | None,
          run_cache: bool = True) -> int:
    """Download objects (and the run-cache) into the local cache without checking out.

    Nothing fetched is trusted yet: callers go through mlbuild.store.transfer, which verifies."""
    check_remote(root, remote)
    with _repo(root) as repo:
        return int(repo.fetch(targets=targets or None, remote=remote, run_cache=run_cache) or 0)


def checkout(root: Path, targets: list[str] | None) -> None:
    """Materialise outputs from the local cache like `dvc checkout`."""
    with _repo(root) as repo:
        repo.checkout(targets=targets or None, force=True)


def cloud_status(root: Path, remote: str | None) -> dict[str, str]:
    """Per path: 'new' (not pushed), 'deleted' (not in the local cache), 'missing' (nowhere)."""
    check_remote(root, remote)
    with _repo(root) as repo:
        return {str(k): str(v) for k, v in repo.status(cloud=True, remote=remote).items()}


def used_hashes(root: Path, all_commits: bool, all_branches: bool, all_tags: bool) -> set[str]:
    """md5s of every object the selected revisions need (directories as '.dir' entries)."""
    found: set[str] = set()
    with _repo(root) as repo:
        used = repo.used_objs(all_commits=all_commits, all_branches=all_branches,
                              all_tags=all_tags, force=True)
        for hashes in used.values():
            found.update(str(h.value) for h in hashes if h.value)
    return found


def fetch_objects(root: Path, md5s: list[str], remote_name: str | None) -> None:
    """Download these objects (directories with their files) from the remote, if it has them."""
    import logging

    from dvc_data.hashfile.hash_info import HashInfo

    from mlbuild.store.cache import Cache

    cache = Cache(root)
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.ERROR)  # "missing cache files" is an answer here, not an error
    try:
        with _repo(root) as repo:
            repo.cloud.pull({HashInfo("md5", m) for m in md5s}, remote=remote_name)
            entries = {e for m in md5s if m.endswith(".dir") and cache.has_md5(m)
                       for _, e in cache.manifest(m)}
            if entries:
                repo.cloud.pull({HashInfo("md5", e) for e in entries}, remote=remote_name)
    finally:
        dvc_logger.setLevel(level)


def fetch_run_cache(root: Path, remote_name: str | None) -> None:
    """Download the remote's run-cache entries (small YAML files)."""
    with _repo(root) as repo:
        repo.stage_cache.pull(remote_name)


def missing_on_remote(root: Path, md5s: set[str], remote_name: str | None) -> set[str]:
    """Which of these objects the remote's storage itself lacks (asked of the storage, never
    of DVC's remote index, which an interrupted transfer can leave claiming too much)."""
    if not md5s:
        return set()
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(remote_name, "push")
        return md5s - set(odb.oids_exist(sorted(md5s)))


EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # the one object that may be an empty file


def _damaged(path: str, md5: str) -> bool:
    """An empty file standing for a non-empty object, or a manifest that does not parse."""
    import json

    try:
        size = Path(path).stat().st_size
    except OSError:
        return False  # absent: the push sends it
    if size == 0:
        return md5 != EMPTY_MD5
    if not md5.endswith(".dir"):
        return False
    try:
        with open(path, "rb") as handle:
            return not isinstance(json.load(handle), list)
    except (OSError, ValueError):
        return True


def drop_damaged(root: Path, md5s: set[str], remote_name: str | None) -> list[str]:
    """Remove the objects among *md5s* that a killed transfer left damaged on a local remote,
    and clear DVC's index of that remote, so that the push sends them again. (DVC first tries
    a reflink at the object's final path: it creates the file, the clone fails, it unlinks
    it; a kill in between leaves an empty object, and an empty .dir breaks every later push.)
    Other remotes store an object whole or not at all."""
    from dvc_data.hashfile.db import get_index
    from dvc_objects.fs.local import LocalFileSystem

    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(remote_name, "push")
        if not isinstance(odb.fs, LocalFileSystem):
            return []
        damaged = [m for m in sorted(md5s) if _damaged(odb.oid_to_path(m), m)]
        for md5 in damaged:
            Path(odb.oid_to_path(md5)).unlink()
        if damaged:
            index = get_index(odb)
            try:
                index.clear()
            finally:
                index.close()
        return damaged


def send_objects(root: Path, md5s: set[str], remote_name: str | None) -> int:
    """Upload these objects from the local cache straight to the remote (directory files
    before their manifest); DVC's index of that remote is cleared, as it was wrong."""
    from dvc_data.hashfile.db import get_index
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.transfer import transfer

    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(remote_name, "push")
        index = get_index(odb)
        try:
            index.clear()
        finally:
            index.close()
        result = transfer(repo.cache.local, odb, {HashInfo("md5", m) for m in md5s})
        if result.failed:
            failed = sorted(str(h.value) for h in result.failed)
            raise RemoteError(f"{len(failed)} object(s) could not be uploaded to the remote: "
                              + ", ".join(failed[:3]))
        return len(result.transferred)
