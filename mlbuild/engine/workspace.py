"""Finding the project root and holding the per-build state objects."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.dvcfmt.dvcyaml import load_pipeline
from mlbuild.dvcfmt.lockfile import LockFile
from mlbuild.dvcfmt.params import ParamsReader
from mlbuild.engine.staleness import StatusChecker
from mlbuild.errors import GraphError
from mlbuild.files.layout import state_dir
from mlbuild.pipeline.graph import Graph, build_graph
from mlbuild.pipeline.model import Pipeline
from mlbuild.store.boundary import check_paths, stage_paths
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import Hasher, md5_file
from mlbuild.store.runcache import RunCache
from mlbuild.store.statcache import StatCache
from mlbuild.store.tracked import TrackedOut, covers, find_pointers

if TYPE_CHECKING:
    from mlbuild.engine.recovery import Leftovers


@dataclass
class Workspace:
    """The loaded project: pipeline, graph, lock, cache and hashing state."""

    root: Path
    pipeline: Pipeline
    graph: Graph
    tracked: list[TrackedOut]
    lock: LockFile
    stat_cache: StatCache
    hasher: Hasher
    cache: Cache
    runcache: RunCache
    checker: StatusChecker

    def save_state(self) -> None:
        """Persist the stat cache."""
        self.stat_cache.save()


def open_workspace(
    root: Path, dvcyaml: str | None = None, pending: dict[str, str] | None = None,
) -> Workspace:
    """Load and validate everything a build or status needs.

    *dvcyaml* and *pending* (params files by path) are texts not yet written: a dry run's
    would-be files.
    """
    pipeline = load_pipeline(root, dvcyaml)
    dep_paths = [d.path for s in pipeline.stages.values() for d in s.deps]
    out_paths = {o.path: s.name for s in pipeline.stages.values() for o in s.outs}
    tracked = find_pointers(root, dep_paths + list(out_paths))
    for path, stage in out_paths.items():
        clash = covers(tracked, path) or next(
            (t for t in tracked if t.path.startswith(path + "/")), None)
        if clash is not None:
            raise GraphError(
                f"output '{path}' of stage '{stage}' overlaps '{clash.path}', which "
                f"{clash.dvcfile} tracks; a path has one owner: move the output elsewhere"
            )

    cache = Cache(root)
    check_paths(root, [p for s in pipeline.stages.values() for p in stage_paths(s)]
                + [(t.path, f"{t.dvcfile}: tracked path") for t in tracked], cache.dir)

    def exists(path: str) -> bool:
        return os.path.lexists(root / path) or covers(tracked, path) is not None

    graph = build_graph(pipeline, exists)
    stat_cache = StatCache(state_dir(root) / "stat-cache.json")
    hasher = Hasher(root, stat_cache)
    cache.verifier = object_verifier(root, stat_cache)
    return Workspace(
        root=root, pipeline=pipeline, graph=graph, tracked=tracked, lock=LockFile(root),
        stat_cache=stat_cache, hasher=hasher, cache=cache, runcache=RunCache(cache.dir),
        checker=StatusChecker(hasher, ParamsReader(root, pending), cache),
    )


def object_verifier(root: Path, stat_cache: StatCache) -> Callable[[Path], str]:
    """md5 of a cache object, remembered under its (inode, ctime, size) rather than mtime:
    ctime cannot be set back after a write, so an object changed in place is always rehashed."""

    def verify(path: Path) -> str:
        st = path.stat()
        rel, key = "object:" + os.path.relpath(path, root), (st.st_ino, st.st_ctime_ns, st.st_size)
        md5 = stat_cache.get(rel, key)
        if md5 is None:
            md5 = md5_file(path)
            stat_cache.put(rel, key, md5)
        return md5

    return verify


@contextmanager
def project_lock(root: Path, wait: bool = True,
                 on_wait: Callable[[str], None] | None = None,
                 on_clean: Callable[[Leftovers], None] | None = None,
                 dry_recovery: bool = False) -> Iterator[int | None]:
    """Serialise every command that writes with DVC and other mlbuild runs: DVC's own
    repository lock (.dvc/tmp/lock). Yields the lock's descriptor (None for a hardlink lock).

    A marker says a run holds the lock; finding it means that run was killed, so what it left
    (stage processes, backups, temporary files) is cleaned up first and told to *on_clean*.
    With *dry_recovery* (a command that only reports) it is only found, and the marker stays
    for the next command that writes.
    """
    from mlbuild.dvcfmt.repolock import held, repo_lock

    outer = held(root)
    if outer is not None:  # nested: the outer holder owns the marker
        yield outer if outer >= 0 else None
        return
    with repo_lock(root, wait, on_wait) as fd:
        marker = state_dir(root) / "running"
        crashed = marker.exists()
        if crashed:
            from mlbuild.engine.recovery import clean

            found = clean(root, crashed=True, dry=dry_recovery)
            if on_clean is not None and found:
                on_clean(found)
        owner = not (crashed and dry_recovery)
        if owner:
            with suppress(OSError):  # empty, so that even a full disk can hold it
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
        try:
            yield fd
        finally:
            if owner:
                marker.unlink(missing_ok=True)
