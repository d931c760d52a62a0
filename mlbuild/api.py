"""Every verb for programs (run, status, dag, verify, pull, push, ...), each a thin layer over
the engine, verify and data that records the command in the history. No printing, no exiting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.engine import session
from mlbuild.engine.inputs import prepare
from mlbuild.engine.session import RunRequest
from mlbuild.engine.workspace import Workspace, open_workspace
from mlbuild.events import Emit, StageResult, ignore
from mlbuild.pipeline.graph import topo_order

if TYPE_CHECKING:
    from mlbuild.data.ops import PullResult
    from mlbuild.store.tracked import TrackedChange, TrackedOut
    from mlbuild.verify.rebuild import VerifyReport

__all__ = ["RunRequest", "StageStatus", "dag", "data_changes", "failed", "pull", "push", "run",
           "status", "verify"]


@dataclass
class StageStatus:
    """One stage's verdict for `mlbuild status`."""

    stage: str
    stale: bool
    frozen: bool
    reasons: list[str]
    why: list[dict[str, str | None]] = field(default_factory=list)  # kind, path, detail


def run(root: Path, request: RunRequest, emit: Emit = ignore,
        on_wait: Callable[[str], None] | None = None,
        on_notice: Callable[[str], None] | None = None) -> dict[str, StageResult]:
    """Bring the requested stages (and their upstream) up to date, and record the run in the
    history (a dry run changes nothing and is not recorded). *on_notice* hears what is done
    besides building, such as pulling missing data."""
    return session.build(root, request, emit, session.Hooks(on_wait, on_notice)).stages


def failed(results: dict[str, StageResult]) -> list[StageResult]:
    """The stages that failed."""
    return session.failed(results)


def status(root: Path, targets: list[str] | None = None) -> list[StageStatus]:
    """Each stage's staleness and reasons, in topological order."""
    return status_report(root, targets, data=False)[0]


def _verdicts(ws: Workspace, targets: list[str] | None) -> list[StageStatus]:
    plan = session.plan(ws, session.planned_order(ws, targets or []))
    return [StageStatus(s.stage, s.stale, s.frozen, [r.detail for r in s.reasons],
                        [{"kind": str(r.kind), "path": r.path, "detail": r.detail}
                         for r in s.reasons]) for s in plan.steps]


def status_report(root: Path, targets: list[str] | None = None, data: bool = True,
                  ) -> tuple[list[StageStatus], list[TrackedChange]]:
    """status(), and with *data* data_changes(), from one workspace; git lists the .dvc
    files meanwhile (a second workspace and a git wait cost a no-op status ~30%)."""
    from mlbuild.gitrepo import git_later
    from mlbuild.store.tracked import POINTER_LISTING, changes, find_pointers

    listing = git_later(root, *POINTER_LISTING) if data else None
    if data and not targets and not _has_pipeline(root):  # only .dvc files, as `dvc status`
        return [], _pointer_changes(root, find_pointers(root, [], everything=True,
                                                        listing=listing))
    ws = prepare(root, dry=True)
    try:
        verdicts = _verdicts(ws, targets)
        if listing is None:
            return verdicts, []
        tracked = find_pointers(root, [], everything=True, listing=listing)
        return verdicts, changes(tracked, ws.hasher, ws.cache)
    finally:
        ws.save_state()


def _has_pipeline(root: Path) -> bool:
    """True when the project declares stages (dvc.yaml, or stages/*.yaml to generate it)."""
    return (root / "dvc.yaml").exists() or any((root / "stages").glob("*.yaml"))


def _pointer_changes(root: Path, tracked: list[TrackedOut]) -> list[TrackedChange]:
    """changes() of .dvc-tracked data in a project without a pipeline."""
    from mlbuild.files.layout import state_dir
    from mlbuild.store.cache import Cache
    from mlbuild.store.hashing import Hasher
    from mlbuild.store.statcache import StatCache
    from mlbuild.store.tracked import changes

    stat_cache = StatCache(state_dir(root) / "stat-cache.json")
    try:
        return changes(tracked, Hasher(root, stat_cache), Cache(root))
    finally:
        stat_cache.save()


def data_changes(root: Path) -> list[TrackedChange]:
    """.dvc-tracked data edited, deleted or not cached, every .dvc file of the project
    included, as `dvc status` reports it (record an edit with `mlbuild data add PATH`)."""
    from mlbuild.store.tracked import changes, find_pointers

    ws = open_workspace(root)
    try:
        return changes(find_pointers(root, [], everything=True), ws.hasher, ws.cache)
    finally:
        ws.save_state()


def dag(root: Path) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Stages in topological order and their upstream edges."""
    ws = prepare(root, dry=True)
    return topo_order(ws.graph), ws.graph.upstream


def verify(root: Path, targets: list[str], jobs: int, twice: bool = False,
           keep: bool = False) -> VerifyReport:
    """The reproducibility check (see mlbuild.verify.rebuild), recorded in the run history."""
    from mlbuild.history.journal import StageRecord, recording
    from mlbuild.verify.rebuild import verify as check

    with recording(root, "verify", list(targets)) as recorder:
        recorder.record.detail = {"twice": twice, "jobs": jobs}
        report = check(root, targets, jobs, twice=twice, keep=keep)
        recorder.record.dirty = report.dirty
        recorder.record.detail["root_cause"] = report.root_cause
        recorder.record.detail["build"] = {name: str(res.outcome)
                                           for name, res in report.build.items()}
        for verdict in report.stages:  # the verdict, and what the scratch build did for it
            built = report.build.get(verdict.stage)
            recorder.stage(StageRecord(
                verdict.stage, verdict.status, round(built.seconds, 3) if built else 0.0,
                reasons=verdict.hints, message=", ".join(verdict.files),
                outputs=report.outputs.get(verdict.stage, {})))
        recorder.record.status = "ok" if report.ok else "failed"
    if not report.dirty and report.revision:  # a clean commit's verdict: shared
        from mlbuild.history import notes

        notes.add(root, report.revision, "verify", {
            "ok": report.ok, "targets": list(targets),
            "stages": {v.stage: v.status for v in report.stages}})
    return report


def _remote_args(targets: list[str], remote_name: str | None) -> list[str]:
    return [*targets, *(["-r", remote_name] if remote_name else [])]


def pull(root: Path, targets: list[str], remote_name: str | None) -> PullResult:
    """Download, verify and check out data, outputs and the run-cache (see data.ops.pull),
    recorded in the run history."""
    from mlbuild.data import ops
    from mlbuild.history.journal import recording

    with recording(root, "pull", _remote_args(targets, remote_name)) as recorder:
        result = ops.pull(root, targets, remote_name)
        recorder.record.detail = {"fetched": result.fetched, "refetched": result.refetched,
                                  "contracts": result.validated}
        return result


def push(root: Path, targets: list[str], remote_name: str | None) -> int:
    """Upload data, outputs and the run-cache (see data.ops.push), recorded in the run
    history; returns the number of objects sent."""
    from mlbuild.data import ops
    from mlbuild.history.journal import recording

    with recording(root, "push", _remote_args(targets, remote_name)) as recorder:
        count = ops.push(root, targets, remote_name)
        recorder.record.detail = {"pushed": count}
        return count
