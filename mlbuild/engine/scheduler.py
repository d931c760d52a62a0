"""The scheduler: runs a per-stage function over the DAG, in parallel where it may."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from mlbuild.events import FAILED, SKIPPED, Emit, Event, Kind, StageResult

StageFn = Callable[[str], StageResult]


@dataclass
class _Schedule:
    order: list[str]
    deps: dict[str, list[str]]
    jobs: int
    keep_going: bool
    emit: Emit
    results: dict[str, StageResult] = field(default_factory=dict)
    running: dict[Future[StageResult], str] = field(default_factory=dict)
    stop: bool = False

    def ready(self, name: str) -> bool:
        return all(u in self.results for u in self.deps[name])

    def start_ready(self, pending: list[str], pool: ThreadPoolExecutor, build: StageFn) -> None:
        started: list[str] = []
        for name in list(pending):
            if self.stop or not self.ready(name):
                continue
            bad = [u for u in self.deps[name] if self.results[u].outcome in (FAILED, SKIPPED)]
            if bad:
                pending.remove(name)
                msg = f"upstream stage '{bad[0]}' did not complete"
                self.results[name] = StageResult(name, SKIPPED, message=msg)
                self.emit(Event(Kind.DONE, name, SKIPPED, message=msg))
            elif len(self.running) < self.jobs:
                pending.remove(name)
                self.running[pool.submit(build, name)] = name
                started.append(name)
        # announced once all are under way: the first announcement loads the display (rich),
        # which the stages need not wait for; a reporter may so see a fast stage's DONE first
        for name in started:
            self.emit(Event(Kind.START, name))

    def collect(self) -> None:
        done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
        for fut in done:
            name = self.running.pop(fut)
            result = fut.result()
            self.results[name] = result
            if result.outcome == FAILED and not self.keep_going:
                self.stop = True


def execute(
    order: list[str],
    upstream: dict[str, tuple[str, ...]],
    build: StageFn,
    emit: Emit,
    jobs: int = 1,
    keep_going: bool = False,
    on_abort: Callable[[], None] | None = None,
) -> dict[str, StageResult]:
    """Run *build* for every stage in *order* once its upstream stages succeeded.

    A failure stops scheduling new stages (with keep_going, only the failed stage's
    downstream is skipped); stages already running finish cleanly. An interrupt calls
    *on_abort* (which stops running commands) and waits for the workers before re-raising.
    """
    planned = set(order)
    deps = {n: [u for u in upstream.get(n, ()) if u in planned] for n in order}
    sched = _Schedule(order, deps, max(1, jobs), keep_going, emit)
    pending = list(order)
    emit(Event(Kind.PLAN, "", total=len(order)))
    with ThreadPoolExecutor(max_workers=sched.jobs) as pool:
        try:
            while pending or sched.running:
                sched.start_ready(pending, pool, build)
                if not sched.running:
                    break
                sched.collect()
        except BaseException:
            sched.stop = True
            if on_abort is not None:
                on_abort()
            raise
    for name in order:
        if name not in sched.results:
            sched.results[name] = StageResult(name, SKIPPED, message="not started")
    return sched.results
