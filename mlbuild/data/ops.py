"""Data versioning for programs: add, pull, push, status, fsck and gc. No printing."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from mlbuild.dvcfmt.lockfile import LockFile
from mlbuild.engine.inputs import check_contracts
from mlbuild.errors import IntegrityError, UsageError
from mlbuild.store import remotes as remote
from mlbuild.store.cache import Cache
from mlbuild.store.integrity import Corrupt, GcPlan, fsck, gc_plan, objects
from mlbuild.store.remotes import RemoteError
from mlbuild.store.tracked import find_pointers

if TYPE_CHECKING:
    from mlbuild.engine.recovery import Leftovers

P = ParamSpec("P")
R = TypeVar("R")


def _serialised(fn: Callable[Concatenate[Path, P], R]) -> Callable[Concatenate[Path, P], R]:
    """Hold the project's build lock: no gc, pull or push while a build commits outputs."""

    @functools.wraps(fn)
    def locked(root: Path, /, *args: P.args, **kwargs: P.kwargs) -> R:
        from mlbuild.engine.workspace import project_lock

        with project_lock(root):
            return fn(root, *args, **kwargs)

    return locked


@_serialised
def add(root: Path, paths: list[str]) -> list[str]:
    """Validate contracts first (bad data never gets in), then track like `dvc add`."""
    from mlbuild.store.boundary import check_path

    rel = []
    for path in paths:
        lexical = os.path.relpath(os.path.normpath(Path.cwd() / path), root)
        if not lexical.startswith(".."):  # through a symlink out or into .git, or a FIFO
            check_path(root, lexical, "cannot add: path")
        full = (Path.cwd() / path).resolve()
        if not full.exists():
            raise UsageError(f"cannot add '{path}': no such file or directory")
        try:
            rel.append(full.relative_to(root).as_posix())
        except ValueError as exc:
            raise UsageError(f"cannot add '{path}': it is outside the project") from exc
    check_contracts(root, rel)
    native = _native_adds(root, rel)
    others = [r for r in rel if r not in native]
    return sorted([*native.values(), *(remote.add(root, others) if others else [])])


def _native_adds(root: Path, rel: list[str]) -> dict[str, str]:
    """Add the plain cases natively (see mlbuild.store.adding); path -> .dvc file written."""
    from mlbuild.files.layout import state_dir
    from mlbuild.store.adding import plain, track
    from mlbuild.store.hashing import Hasher
    from mlbuild.store.statcache import StatCache

    taken = _taken(root)
    if taken is None:
        return {}
    cache = Cache(root)
    hasher = Hasher(root, StatCache(state_dir(root) / "stat-cache.json"))
    return {r: track(root, r, cache, hasher) for r in rel if plain(root, r, cache, taken)}


def _taken(root: Path) -> list[str] | None:
    """Paths already tracked by a .dvc file or produced by a stage of dvc.yaml; None when
    that is not known for sure (a dvc.yaml below the root, one that does not load): DVC
    then decides everything."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline
    from mlbuild.errors import MlbuildError
    if any(p.endswith("/dvc.yaml") for p in _listed(root, "*dvc.yaml")):
        return None
    taken = [out.path for out in find_pointers(root, [], everything=True)]
    try:
        pipeline = load_pipeline(root) if (root / "dvc.yaml").is_file() else None
    except MlbuildError:
        return None
    if pipeline is not None:
        taken += [o.path for s in pipeline.stages.values() for o in s.outs]
    return taken


def _listed(root: Path, pattern: str) -> list[str]:
    """Files git knows (tracked or not ignored) matching *pattern*; nothing outside git."""
    from mlbuild.gitrepo import GitError, git

    try:
        out = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                  pattern)
    except GitError:
        return []
    return [n for n in out.decode().split("\0") if n]


def _lock_outputs(root: Path) -> list[tuple[str, str]]:
    """(path, md5) of every output the current dvc.lock and .dvc pointer files name."""
    outs = [(out.path, out.info.md5) for out in find_pointers(root, [], everything=True)]
    for entry in LockFile(root).stages.values():
        outs += entry.out_md5s().items()
    return outs


def lock_hashes(root: Path) -> set[str]:
    """Every object the current dvc.lock and .dvc pointer files name."""
    return {md5 for _, md5 in _lock_outputs(root)}


def needed_objects(root: Path, cache: Cache) -> dict[str, str]:
    """Every object the lock and .dvc files need (directory entries too, where the manifest is
    in the cache) -> the workspace path it holds, for messages."""
    from mlbuild.store.transfer import expand

    return expand(cache, _lock_outputs(root))


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return "; ".join(items[:3]) + more


@dataclass
class PullResult:
    """What a pull did."""

    fetched: int
    validated: int = 0
    refetched: list[str] = field(default_factory=list)


@_serialised
def pull(root: Path, targets: list[str], remote_name: str | None) -> PullResult:
    """Fetch objects and run-cache, verify every needed object, then check out. A local copy
    that fails its hash (an interrupted earlier pull) is fetched again, not reported."""
    from mlbuild.store.transfer import corrupt_message, fetch_verified

    cache = Cache(root)
    result = fetch_verified(root, cache, lambda: remote.fetch(root, targets, remote_name),
                            lambda: needed_objects(root, cache), remote_name,
                            refetch_missing=not targets)  # a targeted pull fetches no more
    needed = needed_objects(root, cache)
    if result.corrupt:
        raise IntegrityError(corrupt_message(result.corrupt, needed))
    from mlbuild.store.boundary import check_project

    check_project(root)  # DVC's checkout would follow a symlink out of the project
    try:
        remote.checkout(root, targets)
    except remote.RemoteError as exc:
        lost = [f"{path} (md5 {md5})" for md5, path in needed.items() if not cache.has_md5(md5)]
        if not lost:
            raise
        raise remote.RemoteError(
            f"{len(lost)} needed object(s) are neither in the local cache nor on the remote, "
            f"so they were not checked out: {_listing(lost)}; push them from a machine that "
            "has them, or rebuild them with 'mlbuild run'"
        ) from exc
    validated = check_contracts(root, [o.path for o in find_pointers(root, [], everything=True)])
    return PullResult(fetched=result.count, validated=validated, refetched=result.refetched)


@_serialised
def push(root: Path, targets: list[str], remote_name: str | None) -> int:
    """Refuse to push corrupted objects; then push data, outputs and the run-cache."""
    remote.check_remote(root, remote_name)
    cache = Cache(root)
    needed = needed_objects(root, cache)
    bad = fsck(cache, only=set(needed))
    if bad:
        raise IntegrityError(
            f"{len(bad)} local cache object(s) are corrupted, nothing was pushed: "
            + _listing([f"{needed[b.expected]} (object {b.path}: expected md5 {b.expected}, "
                        f"found {b.actual})" for b in bad])
            + "; run 'mlbuild data fsck --repair', then rebuild or pull them"
        )
    missing = [f"{needed[md5]} (md5 {md5})" for md5 in needed
               if not cache.has_md5(md5) and needed[md5] not in _uncached_outputs(root)]
    if missing and not targets:
        raise RemoteError(
            f"{len(missing)} object(s) that dvc.lock or a .dvc file needs are not in the local "
            f"cache, nothing was pushed: {_listing(missing)}; 'mlbuild run' re-commits outputs "
            "that are in the workspace, 'mlbuild pull' fetches the others"
        )
    remote.drop_damaged(root, set(needed), remote_name)  # what a killed push left behind
    count = remote.push(root, targets, remote_name)
    if targets:
        return count
    from mlbuild.store.transfer import complete_push, expand, runcache_outputs

    everything = {**expand(cache, runcache_outputs(cache)), **needed}
    return count + complete_push(root, cache, everything, remote_name)


def _uncached_outputs(root: Path) -> set[str]:
    """Outputs declared with cache: false (kept in git, never in the cache)."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline

    return {o.path for s in load_pipeline(root).stages.values() for o in s.outs if not o.cache}


def _cleanup(root: Path, write: bool) -> tuple[Leftovers, Cache]:
    """What killed runs left (stage processes, backups, temporary files), undone only when
    *write*; otherwise only found. Called while holding the project lock."""
    from mlbuild.engine.recovery import clean

    return clean(root, crashed=False, dry=not write), Cache(root)


def _merged(first: list[Leftovers], then: Leftovers) -> Leftovers:
    """A crash's cleanup (when the lock found one) followed by the ordinary one."""
    if first and then.dry:  # a dry look finds the same leftovers twice: the crash's view wins
        return first[0]
    for found in first:
        then.restored[:0], then.removed[:0] = found.restored, found.removed
        then.kept[:0] = found.kept
    return then


@dataclass
class FsckResult:
    """What fsck found: objects checked, corrupted ones, leftovers of killed runs (cleaned
    only with --repair)."""

    total: int
    corrupt: list[Corrupt]
    restored: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def check_cache(root: Path, repair: bool) -> FsckResult:
    """Verify every cache object; report what killed runs left. With repair, delete the bad
    objects, put back stranded backups and remove the leftovers."""
    from mlbuild.engine.workspace import project_lock

    crash: list[Leftovers] = []
    with project_lock(root, on_clean=crash.append, dry_recovery=not repair):
        found, cache = _cleanup(root, repair)
        found = _merged(crash, found)
        total = len(objects(cache))
        return FsckResult(total, fsck(cache, remove=repair), found.restored, found.removed,
                          found.kept)


def status(root: Path, remote_name: str | None) -> dict[str, str]:
    """Per path: not pushed ('new'), missing locally ('deleted'), missing everywhere. What the
    remote holds is asked of the remote's storage for every object dvc.lock, the .dvc files
    and the run-cache name (files inside directories included), not of DVC's remote index."""
    from mlbuild.store.transfer import expand, runcache_outputs

    found = remote.cloud_status(root, remote_name)
    cache = Cache(root)
    # a run-cache entry whose outputs were collected locally is only a missed shortcut: the
    # objects it names count when there is something to push
    runs = {m: p for m, p in expand(cache, runcache_outputs(cache)).items() if cache.has_md5(m)}
    uncached = _uncached_outputs(root)  # kept in git, never pushed
    needed = {m: p for m, p in {**runs, **needed_objects(root, cache)}.items()
              if p not in uncached}
    for md5 in sorted(remote.missing_on_remote(root, set(needed), remote_name)):
        found[needed[md5]] = "new" if cache.has_md5(md5) else "missing"
    return found


def gc(root: Path, force: bool, all_commits: bool = False, all_branches: bool = False,
       all_tags: bool = False) -> GcPlan:
    """Plan (and with force, do) removal of unreferenced cache objects. Objects the current
    dvc.lock and .dvc files need are always kept, whatever DVC reports."""
    from mlbuild.engine.workspace import project_lock

    crash: list[Leftovers] = []
    with project_lock(root, on_clean=crash.append, dry_recovery=not force):
        found, cache = _cleanup(root, force)
        found = _merged(crash, found)
        used = remote.used_hashes(root, all_commits, all_branches, all_tags) | lock_hashes(root)
        plan = gc_plan(cache, used)
        plan.restored, plan.leftovers = found.restored, found.removed
        if force:
            for path in plan.remove:
                path.chmod(0o644)
                path.unlink()
        return plan
