"""The plan: which stages a build covers, in what order, and why each one must run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Cause(Protocol):
    """A staleness reason as the plan sees it (the engine's Reason is one)."""

    @property
    def kind(self) -> str:
        """What changed: cmd, code, data, params, env, outs, new, ..."""

    @property
    def detail(self) -> str:
        """The reason in words."""

    @property
    def path(self) -> str | None:
        """The file at fault, when there is one."""


@dataclass(frozen=True)
class Step:
    """One planned stage and the reasons it is stale (none: it is up to date)."""

    stage: str
    reasons: tuple[Cause, ...] = ()
    frozen: bool = False

    @property
    def stale(self) -> bool:
        """True when the stage's own inputs, command or outputs changed."""
        return bool(self.reasons)


@dataclass(frozen=True)
class Plan:
    """The stages of a build in topological order, each with its staleness reasons.

    *complete* is False for a plan cut short at its first stale stage (the cheap no-op check
    needs no more than that)."""

    steps: tuple[Step, ...]
    complete: bool = True

    @property
    def order(self) -> list[str]:
        """The planned stages, upstream first."""
        return [s.stage for s in self.steps]

    @property
    def stale(self) -> list[str]:
        """The stages that are stale on their own account."""
        return [s.stage for s in self.steps if s.stale]

    @property
    def up_to_date(self) -> bool:
        """True when the whole plan was checked and nothing in it must run."""
        return self.complete and not self.stale

    def step(self, stage: str) -> Step | None:
        """The step of *stage*, if planned."""
        return next((s for s in self.steps if s.stage == stage), None)
