"""Events the engine emits; reporters turn them into a live display or JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Outcomes of one stage in a build.
UP_TO_DATE = "up-to-date"
RESTORED = "restored"
RAN = "ran"
FAILED = "failed"
SKIPPED = "skipped"
FROZEN = "frozen"
WOULD_RUN = "would-run"


@dataclass(frozen=True)
class Event:
    """Something that happened to a stage (kind: 'start' or 'done')."""

    kind: str
    stage: str
    outcome: str = ""
    seconds: float = 0.0
    reasons: tuple[str, ...] = ()
    message: str = ""
    log: str = ""
    warnings: tuple[str, ...] = ()


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
