"""Events the engine emits; reporters turn them into a live display or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How one stage ended in a build (the values are what `--json` prints)."""

    UP_TO_DATE = "up-to-date"
    RESTORED = "restored"
    RAN = "ran"
    FAILED = "failed"
    SKIPPED = "skipped"
    FROZEN = "frozen"
    WOULD_RUN = "would-run"


class Kind(StrEnum):
    """What an event reports: the plan (its stage count), a stage starting, a stage done."""

    PLAN = "plan"
    START = "start"
    DONE = "done"


UP_TO_DATE, RESTORED, RAN, FAILED = (Outcome.UP_TO_DATE, Outcome.RESTORED, Outcome.RAN,
                                     Outcome.FAILED)
SKIPPED, FROZEN, WOULD_RUN = Outcome.SKIPPED, Outcome.FROZEN, Outcome.WOULD_RUN
QUIET = (UP_TO_DATE, FROZEN)  # counted in a summary, not listed one by one


@dataclass(frozen=True)
class Event:
    """Something that happened in a build (kind: the plan, with the stage count in *total*;
    then start and done per stage)."""

    kind: Kind
    stage: str
    outcome: str = ""
    seconds: float = 0.0
    reasons: tuple[str, ...] = ()
    message: str = ""
    log: str = ""
    warnings: tuple[str, ...] = ()
    total: int = 0


@dataclass
class StageResult:
    """The final word on one stage."""

    stage: str
    outcome: str
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)
    message: str = ""
    log: str = ""
    warnings: list[str] = field(default_factory=list)


Emit = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A reporter that drops every event."""


def results_json(results: dict[str, StageResult], elapsed: float) -> str:
    """Machine-readable build results (`mlbuild run --json`)."""
    counts: dict[str, int] = {}
    for res in results.values():
        counts[res.outcome] = counts.get(res.outcome, 0) + 1
    doc: dict[str, Any] = {
        "ok": not any(r.outcome == FAILED for r in results.values()),
        "elapsed": round(elapsed, 3),
        "counts": counts,
        "stages": [
            {"stage": r.stage, "outcome": r.outcome, "seconds": round(r.seconds, 3),
             "reasons": r.reasons, "message": r.message, "warnings": r.warnings}
            for r in results.values()
        ],
    }
    return json.dumps(doc, indent=2)
