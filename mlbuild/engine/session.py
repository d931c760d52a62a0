"""One build, composed: the project lock, params and dvc.yaml brought up to date, missing data
fetched, the plan, the sandbox, the builder and the scheduler, and the run's history record.

`build()` is the engine's entry point for every caller: `mlbuild run` (through api), verify's
scratch builds, and experiments' variants, all in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.dvcfmt.params import check_declared
from mlbuild.engine.inputs import fetch_inputs, prepare
from mlbuild.engine.workspace import Workspace, project_lock
from mlbuild.events import (
    FAILED,
    FROZEN,
    RAN,
    RESTORED,
    UP_TO_DATE,
    Emit,
    Event,
    Kind,
    StageResult,
    ignore,
)
from mlbuild.files.layout import state_dir
from mlbuild.pipeline.graph import select, topo_order
from mlbuild.pipeline.plan import Plan, Step

if TYPE_CHECKING:  # the build machinery is imported only when something may run
    from mlbuild.engine.recovery import Leftovers
    from mlbuild.engine.warm import WarmPool
    from mlbuild.history.journal import Recorder
    from mlbuild.pipeline.graph import Graph
    from mlbuild.sandbox.policy import Sandbox

Notify = Callable[[str], None]


@dataclass
class RunRequest:
    """Everything a build can be asked (`mlbuild run`'s options)."""

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
    shared_runs: bool = False  # builds on one cache at once (experiments): equal stages run once
    only: frozenset[str] | None = None  # stages allowed to run; the others must be restored


@dataclass
class Hooks:
    """What a build tells its caller besides stage events: *on_wait* while another run holds
    the project, *on_notice* what is done besides building (cleaning up after a killed run,
    pulling missing data)."""

    on_wait: Notify | None = None
    on_notice: Notify | None = None


@dataclass
class BuildResult:
    """A finished build: every planned stage's result, and the planned (topological) order."""

    stages: dict[str, StageResult]
    order: list[str]

    @property
    def failed(self) -> list[StageResult]:
        """The stages that failed."""
        return failed(self.stages)


def failed(results: dict[str, StageResult]) -> list[StageResult]:
    """The stages that failed."""
    return [r for r in results.values() if r.outcome == FAILED]


def fanout(*listeners: Emit) -> Emit:
    """One listener that hands every event to each of *listeners* in turn."""
    def emit(event: Event) -> None:
        for listener in listeners:
            listener(event)
    return emit


def build(root: Path, request: RunRequest, emit: Emit = ignore, hooks: Hooks | None = None,
          record: bool = True) -> BuildResult:
    """Bring the requested stages (and their upstream) up to date under the project lock.

    With *record*, the run goes into the project's history (a dry run changes nothing and is
    never recorded); a caller that records the build under its own command passes False.
    """
    hooks = hooks or Hooks()

    def cleaned(found: Leftovers) -> None:  # what a killed run left, before anything runs
        if hooks.on_notice is not None:
            hooks.on_notice(found.summary(root))

    with project_lock(root, wait=request.wait, on_wait=hooks.on_wait,
                      on_clean=cleaned) as lock_fd:
        if request.dry_run or not record:
            return _build(root, request, emit, lock_fd, hooks.on_notice)
        from mlbuild.history.journal import recording

        with recording(root, "run", [*request.targets, *request.overrides]) as recorder:
            recorder.record.detail = {"force": request.force, "jobs": request.jobs,
                                      "keep_going": request.keep_going}
            result = _build(root, request, fanout(emit, recorder), lock_fd, hooks.on_notice,
                            recorder)
            recorder.record.status = "failed" if result.failed else "ok"
            return result


def plan(ws: Workspace, order: list[str], until_stale: bool = False) -> Plan:
    """Each stage of *order* with its staleness reasons; with *until_stale*, cut short at the
    first stale stage (the cheapest check that a build has nothing to do)."""
    steps = []
    for name in order:
        stage = ws.graph.stages[name]
        reasons, _ = ws.checker.check(stage, ws.lock.get(name))
        steps.append(Step(name, tuple(reasons), stage.frozen))
        if reasons and until_stale:
            return Plan(tuple(steps), complete=len(steps) == len(order))
    return Plan(tuple(steps))


def planned_order(ws: Workspace, targets: list[str]) -> list[str]:
    """The targets and their upstream (default: every stage), upstream first."""
    return select(ws.graph, targets) if targets else topo_order(ws.graph)


def _build(root: Path, request: RunRequest, emit: Emit, lock_fd: int | None,
           on_notice: Notify | None, recorder: Recorder | None = None) -> BuildResult:
    ws = prepare(root, request.overrides, dry=request.dry_run)
    procs = warm = None
    try:
        if not request.dry_run:
            fetch_inputs(ws, request.pull, request.pull_remote, on_notice)
        order = planned_order(ws, request.targets)
        check_declared(ws.checker.params, (ws.graph.stages[n] for n in order),
                       ws.graph.producers)
        if not (request.force or request.dry_run):
            settled = plan(ws, order, until_stale=True)
            if settled.up_to_date:  # answered without loading the build machinery
                return BuildResult(_settled(settled, emit), order)
        from mlbuild.engine.builder import Builder, BuildOptions
        from mlbuild.engine.inputs import make_sandbox
        from mlbuild.engine.procgroup import ProcessTable
        from mlbuild.engine.scheduler import execute

        procs = ProcessTable(lock_fd, state_dir(root) / "stages.pgid")
        sandbox = make_sandbox(ws, request.strict)
        warm = None if request.dry_run else warm_pool(root, ws.graph, order, sandbox)
        builder = Builder(
            root=root, graph=ws.graph, lock=ws.lock, hasher=ws.hasher, checker=ws.checker,
            cache=ws.cache, runcache=ws.runcache, emit=emit, sandbox=sandbox, warm=warm,
            options=BuildOptions(force=request.force, dry_run=request.dry_run,
                                 pull=request.pull_remote, shared_runs=request.shared_runs,
                                 only=request.only),
            procs=procs, plan=plan(ws, order) if request.dry_run else None,
        )
        results = execute(order, ws.graph.upstream, builder.build_stage, emit,
                          jobs=1 if request.dry_run else request.jobs,
                          keep_going=request.keep_going, on_abort=builder.procs.terminate_all)
        if recorder is not None:
            _record_outputs(ws, results, recorder)
        return BuildResult(results, order)
    finally:
        if procs is not None:  # the watcher exits while dvc.lock and the state are written
            procs.goodbye()
        if warm is not None:
            warm.close()
        ws.lock.flush()
        ws.save_state()
        if procs is not None:
            procs.close()


def warm_pool(root: Path, graph: Graph, order: list[str], sandbox: Sandbox) -> WarmPool | None:
    """Warm interpreters for the hermetic Python stages this build may run (engine/warm.py)."""
    from mlbuild.engine.warm import WarmPool, preload

    hermetic = [graph.stages[n] for n in order if sandbox.hermetic_for(graph.stages[n])]
    return WarmPool.create(root, preload(root, hermetic)) if hermetic else None


def _settled(done: Plan, emit: Emit) -> dict[str, StageResult]:
    """The results of a plan with nothing to run, announced."""
    results = {s.stage: StageResult(s.stage, FROZEN if s.frozen else UP_TO_DATE)
               for s in done.steps}
    for res in results.values():
        emit(Event(Kind.DONE, res.stage, res.outcome))
    return results


def _record_outputs(ws: Workspace, results: dict[str, StageResult], recorder: Recorder) -> None:
    """The output hashes each stage that did something left in dvc.lock."""
    for name, res in results.items():
        entry = ws.lock.get(name) if res.outcome in (RAN, RESTORED, FROZEN) else None
        if entry:
            recorder.outputs(name, entry.out_md5s())
