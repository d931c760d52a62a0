"""The scheduler with a stub stage function: order, parallelism and failure policy."""

from __future__ import annotations

import threading
import time

from mlbuild.engine.scheduler import execute
from mlbuild.events import FAILED, RAN, SKIPPED, Event, StageResult

UP = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ()}
ORDER = ["a", "b", "c", "e", "d"]


def _stub(fail: set[str], log: list[tuple[str, str]], delay: float = 0.0):  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def build(name: str) -> StageResult:
        with lock:
            log.append(("start", name))
        time.sleep(delay)
        with lock:
            log.append(("end", name))
        return StageResult(name, FAILED if name in fail else RAN)

    return build


def _events() -> tuple[list[Event], object]:
    seen: list[Event] = []
    return seen, seen.append


def test_upstream_finishes_before_downstream_starts() -> None:
    log: list[tuple[str, str]] = []
    seen, emit = _events()
    results = execute(ORDER, UP, _stub(set(), log, 0.01), emit, jobs=3)  # type: ignore[arg-type]
    assert {r.outcome for r in results.values()} == {RAN}
    pos = {entry: i for i, entry in enumerate(log)}
    for name, ups in UP.items():
        for up in ups:
            assert pos[("end", up)] < pos[("start", name)]
    assert [e.stage for e in seen if e.kind == "start"].count("d") == 1


def test_independent_stages_overlap_with_jobs() -> None:
    log: list[tuple[str, str]] = []
    _, emit = _events()
    execute(["x", "y", "z"], {}, _stub(set(), log, 0.2), emit, jobs=3)  # type: ignore[arg-type]
    assert [kind for kind, _ in log[:3]] == ["start", "start", "start"]


def test_failure_stops_scheduling() -> None:
    log: list[tuple[str, str]] = []
    _, emit = _events()
    results = execute(ORDER, UP, _stub({"a"}, log), emit, jobs=1)  # type: ignore[arg-type]
    assert results["a"].outcome == FAILED
    assert all(results[n].outcome == SKIPPED for n in "bcde")
    assert [n for kind, n in log if kind == "start"] == ["a"]


def test_keep_going_builds_independent_branch() -> None:
    log: list[tuple[str, str]] = []
    _, emit = _events()
    results = execute(ORDER, UP, _stub({"b"}, log), emit, jobs=1,  # type: ignore[arg-type]
                      keep_going=True)
    assert results["b"].outcome == FAILED
    assert results["d"].outcome == SKIPPED
    assert results["c"].outcome == RAN and results["e"].outcome == RAN
