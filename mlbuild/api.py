"""The programmatic entry points: run(), status(), dag(). No printing, no exiting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.config.settings import load_project_config
from mlbuild.dvcfmt.dvcyaml import state_dir
from mlbuild.dvcfmt.params import check_declared
from mlbuild.engine.workspace import Workspace, open_workspace, project_lock
from mlbuild.errors import MlbuildError
from mlbuild.events import FAILED, FROZEN, RAN, RESTORED, Emit, Event, Kind, StageResult, ignore
from mlbuild.files.layout import ENV_FILE
from mlbuild.pipeline.graph import select, topo_order

if TYPE_CHECKING:  # the build machinery is imported only when something may run
    from mlbuild.data.ops import PullResult
    from mlbuild.engine.recovery import Leftovers
    from mlbuild.history.journal import Recorder
    from mlbuild.sandbox.policy import Sandbox
    from mlbuild.store.tracked import TrackedChange
    from mlbuild.verify.rebuild import VerifyReport


@dataclass
class RunRequest:
    """Everything `mlbuild run` can be asked."""

    targets: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    jobs: int = 1
    force: bool = False
    dry_run: bool = False
    keep_going: bool = False
    pull: bool = True
    wait: bool = True
    strict: bool = False
    pull_remote: bool = False  # --pull: fetch the run-cache and needed outputs from the remote


@dataclass
class StageStatus:
    """One stage's verdict for `mlbuild status`."""

    stage: str
    stale: bool
    frozen: bool
    reasons: list[str]
    why: list[dict[str, str | None]] = field(default_factory=list)  # kind, path, detail


def prepare(root: Path, overrides: list[str] | None = None, dry: bool = False) -> Workspace:
    """Recompose params.yaml, recompile dvc.yaml, and load the workspace.

    With *dry*, nothing is written: the would-be files are used from memory.
    """
    if not ((root / "configs").is_dir() or (root / "stages").is_dir() or overrides):
        return open_workspace(root)  # a hand-written DVC project: nothing to generate
    from mlbuild.config.compose import sync_params
    from mlbuild.config.declare import sync_dvcyaml

    params = sync_params(root, overrides or [], dry=dry)
    compiled = sync_dvcyaml(root, check=dry, params_text=params if dry else None)
    if not dry:
        return open_workspace(root)
    pending = {"params.yaml": params, ENV_FILE: compiled.environment}
    return open_workspace(root, compiled.dvcyaml,
                          {k: v for k, v in pending.items() if v is not None})


def make_sandbox(ws: Workspace, strict: bool) -> Sandbox:
    """The sandbox policy for this build."""
    from mlbuild.sandbox.policy import Sandbox

    environment: dict[str, Any] = {}
    if (ws.root / ENV_FILE).is_file():
        environment = ws.checker.params.file(ENV_FILE)
    outs = [o.path for s in ws.graph.stages.values() for o in s.outs]
    return Sandbox(root=ws.root, scratch=state_dir(ws.root), environment=environment,
                   project=load_project_config(ws.root), all_outs=outs, strict=strict,
                   in_cache=functools.partial(_cache_object, ws))


def _cache_object(ws: Workspace, rel: str) -> Path | None:
    """The cache object with a file's current content, when the stat cache already knows its
    hash (no reading): hermetic stages' undeclared changes are put back from it."""
    try:
        info = ws.hasher.cached(ws.root / rel)
    except (OSError, MlbuildError):
        return None
    if info is None or not ws.cache.has_md5(info.md5):
        return None
    return ws.cache.object_path(info.md5)


def ensure_tracked_data(ws: Workspace, notify: Callable[[str], None] | None = None) -> None:
    """Restore missing .dvc-tracked inputs from the cache, or pull them from the remote (every
    pulled object verified against its hash before it is checked out)."""
    from mlbuild.store.tracked import restore_missing

    need_pull = restore_missing(ws.root, ws.tracked, ws.cache)
    if not need_pull:
        return
    from mlbuild.data.ops import check_contracts
    from mlbuild.dvcfmt.dvcconfig import default_remote
    from mlbuild.store.transfer import pull_tracked

    outs = [t for t in ws.tracked if t.dvcfile in need_pull and not (ws.root / t.path).exists()]
    if notify is not None:
        count = sum(int(t.info.nfiles or 1) for t in outs)
        notify(f"pulling {count} missing object(s) of {', '.join(need_pull)} from remote "
               f"'{default_remote(ws.root) or '(none configured)'}'")
    pull_tracked(ws.root, ws.cache, outs)
    lost = restore_missing(ws.root, outs, ws.cache)
    if lost:
        from mlbuild.store.remotes import RemoteError

        raise RemoteError(
            f"the data of {', '.join(lost)} is neither in the local cache nor on the remote; "
            "push it from a machine that has it, or check the remote with 'mlbuild data status'")
    check_contracts(ws.root, [t.path for t in outs])


def _fetch_inputs(ws: Workspace, request: RunRequest,
                  notify: Callable[[str], None] | None) -> None:
    """Missing .dvc-tracked data, and with --pull the remote's run-cache, saying so."""
    if request.pull:
        ensure_tracked_data(ws, notify)
    if request.pull_remote:
        from mlbuild.dvcfmt.dvcconfig import default_remote
        from mlbuild.store import remotes as remote

        if notify is not None:
            notify(f"fetching the run-cache from remote "
                   f"'{default_remote(ws.root) or '(none configured)'}'")
        remote.fetch_run_cache(ws.root, None)


def run(root: Path, request: RunRequest, emit: Emit = ignore,
        on_wait: Callable[[str], None] | None = None,
        on_notice: Callable[[str], None] | None = None) -> dict[str, StageResult]:
    """Bring the requested stages (and their upstream) up to date, and record the run in the
    history (a dry run changes nothing and is not recorded). *on_notice* hears what is done
    besides building, such as pulling missing data."""
    def cleaned(found: Leftovers) -> None:  # what a killed run left, before anything runs
        if on_notice is not None:
            on_notice(found.summary(root))

    with project_lock(root, wait=request.wait, on_wait=on_wait, on_clean=cleaned) as lock_fd:
        if request.dry_run:
            return _run(root, request, emit, lock_fd, on_notice)
        from mlbuild.history.journal import recording

        args = [*request.targets, *request.overrides]
        with recording(root, "run", args) as recorder:
            recorder.record.detail = {"force": request.force, "jobs": request.jobs,
                                      "keep_going": request.keep_going}
            results = _run(root, request, fanout(emit, recorder), lock_fd, on_notice,
                           recorder)
            recorder.record.status = "failed" if failed(results) else "ok"
            return results


def fanout(*listeners: Emit) -> Emit:
    """One listener that hands every event to each of *listeners* in turn."""
    def emit(event: Event) -> None:
        for listener in listeners:
            listener(event)
    return emit


def _run(root: Path, request: RunRequest, emit: Emit, lock_fd: int | None,
         on_notice: Callable[[str], None] | None,
         recorder: Recorder | None = None) -> dict[str, StageResult]:
    ws = prepare(root, request.overrides, dry=request.dry_run)
    procs = None
    try:
        if not request.dry_run:
            _fetch_inputs(ws, request, on_notice)
        order = select(ws.graph, request.targets) if request.targets else topo_order(ws.graph)
        check_declared(ws.checker.params, (ws.graph.stages[n] for n in order),
                       ws.graph.producers)
        if not (request.force or request.dry_run):
            settled = _all_up_to_date(ws, order, emit)
            if settled is not None:
                return settled
        from mlbuild.engine.builder import Builder, BuildOptions
        from mlbuild.engine.procgroup import ProcessTable
        from mlbuild.engine.scheduler import execute

        procs = ProcessTable(lock_fd, state_dir(root) / "stages.pgid")
        builder = Builder(
            root=root, graph=ws.graph, lock=ws.lock, hasher=ws.hasher, checker=ws.checker,
            cache=ws.cache, runcache=ws.runcache, emit=emit,
            sandbox=make_sandbox(ws, request.strict),
            options=BuildOptions(force=request.force, dry_run=request.dry_run,
                                 pull=request.pull_remote),
            procs=procs,
        )
        results = execute(order, ws.graph.upstream, builder.build_stage, emit,
                          jobs=1 if request.dry_run else request.jobs,
                          keep_going=request.keep_going, on_abort=builder.procs.terminate_all)
        if recorder is not None:
            _record_outputs(ws, results, recorder)
        return results
    finally:
        if procs is not None:
            procs.close()
        ws.lock.flush()
        ws.save_state()


def _record_outputs(ws: Workspace, results: dict[str, StageResult], recorder: Recorder) -> None:
    """The output hashes each stage that did something left in dvc.lock."""
    for name, res in results.items():
        entry = ws.lock.get(name) if res.outcome in (RAN, RESTORED, FROZEN) else None
        if entry:
            recorder.outputs(name, {str(o["path"]): str(o.get("md5"))
                                    for o in entry.get("outs") or [] if o.get("md5")})


def _all_up_to_date(ws: Workspace, order: list[str], emit: Emit
                    ) -> dict[str, StageResult] | None:
    """The cheapest check first: when no planned stage is stale, answer without loading the
    build machinery (no threads, no sandbox, no cache writes)."""
    from mlbuild.events import UP_TO_DATE

    results = {}
    for name in order:
        stage = ws.graph.stages[name]
        reasons, _ = ws.checker.check(stage, ws.lock.get(name))
        if reasons:
            return None
        results[name] = StageResult(name, FROZEN if stage.frozen else UP_TO_DATE)
    for res in results.values():
        emit(Event(Kind.DONE, res.stage, res.outcome))
    return results


def failed(results: dict[str, StageResult]) -> list[StageResult]:
    """The stages that failed."""
    return [r for r in results.values() if r.outcome == FAILED]


def status(root: Path, targets: list[str] | None = None) -> list[StageStatus]:
    """Each stage's staleness and reasons, in topological order."""
    return status_report(root, targets, data=False)[0]


def _verdicts(ws: Workspace, targets: list[str] | None) -> list[StageStatus]:
    order = select(ws.graph, targets) if targets else topo_order(ws.graph)
    out = []
    for name in order:
        stage = ws.graph.stages[name]
        reasons, _ = ws.checker.check(stage, ws.lock.get(name))
        out.append(StageStatus(name, bool(reasons), stage.frozen, [str(r) for r in reasons],
                               [{"kind": str(r.kind), "path": r.path, "detail": r.detail}
                                for r in reasons]))
    return out


def status_report(root: Path, targets: list[str] | None = None, data: bool = True,
                  ) -> tuple[list[StageStatus], list[TrackedChange]]:
    """status(), and with *data* data_changes(), from one workspace; git lists the .dvc
    files meanwhile (a second workspace and a git wait cost a no-op status ~30%)."""
    from mlbuild.gitrepo import git_later
    from mlbuild.store.tracked import POINTER_LISTING, changes, find_pointers

    listing = git_later(root, *POINTER_LISTING) if data else None
    ws = prepare(root, dry=True)
    try:
        verdicts = _verdicts(ws, targets)
        if listing is None:
            return verdicts, []
        tracked = find_pointers(root, [], everything=True, listing=listing)
        return verdicts, changes(tracked, ws.hasher, ws.cache)
    finally:
        ws.save_state()


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
        for verdict in report.stages:
            recorder.stage(StageRecord(verdict.stage, verdict.status, reasons=verdict.hints,
                                       message=", ".join(verdict.files)))
        recorder.record.status = "ok" if report.ok else "failed"
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
