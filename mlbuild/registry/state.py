"""The registry's state as GTO derives it from the tags: each model's versions, which version
holds each stage (the latest assignment in it), and the ordered history of every event."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.registry.tags import TagEvent, parse_version, read_events


@dataclass(frozen=True)
class HistoryEntry:
    """One event of a model's history, for `model history`."""

    time: int
    action: str  # register, promote, rollback, unassign, deregister, deprecate
    version: str | None
    stage: str | None
    commit: str
    who: str
    tag: str
    forced: bool
    reason: str | None
    gate: dict[str, Any] | None  # the gate report recorded in the annotation


class Registry:
    """Every GTO tag of the repository, queried by model."""

    def __init__(self, events: list[TagEvent]) -> None:
        self.events = events

    @classmethod
    def read(cls, root: Path) -> Registry:
        """The registry as the repository's tags say now."""
        return cls(read_events(root))

    def of(self, name: str) -> list[TagEvent]:
        """The model's events, oldest first."""
        return [e for e in self.events if e.name == name]

    def names(self) -> list[str]:
        """Every model with at least one tag."""
        return sorted({e.name for e in self.events})

    def versions(self, name: str) -> dict[str, TagEvent]:
        """Registered (and not deregistered) versions -> their registration."""
        found = {e.version: e for e in self.of(name) if e.action == "register" and e.version}
        for event in self.of(name):
            if event.action == "deregister" and event.version:
                found.pop(event.version, None)
        return found

    def version_at(self, name: str, commit: str) -> str | None:
        """The version registered at a commit (GTO knows an assignment's version by it)."""
        return next((v for v, e in self.versions(name).items() if e.commit == commit), None)

    def latest(self, name: str) -> str | None:
        """The greatest registered version (SemVer order)."""
        ranked = [(parse_version(v) or (-1, -1, -1), v) for v in self.versions(name)]
        return max(ranked)[1] if ranked else None

    def assignments(self, name: str, stage: str) -> list[TagEvent]:
        """Assignments and unassignments of one stage, oldest first."""
        return [e for e in self.of(name) if e.stage == stage]

    def holder(self, name: str, stage: str) -> str | None:
        """The version that holds the stage now (its latest assignment), if any."""
        events = self.assignments(name, stage)
        if not events or events[-1].action != "assign":
            return None
        return self.version_at(name, events[-1].commit)

    def stages(self, name: str) -> dict[str, str]:
        """stage -> the version holding it."""
        held = {e.stage: self.holder(name, e.stage) for e in self.of(name) if e.stage}
        return {s: v for s, v in sorted(held.items()) if v}

    def next_counter(self, name: str) -> int:
        """The counter of the model's next assignment tag (GTO's rule: highest + 1)."""
        return max((e.counter or 0 for e in self.of(name)), default=0) + 1

    def last_time(self, name: str) -> int:
        """The tagger time of the model's newest event (0 without one)."""
        return max((e.time for e in self.of(name)), default=0)

    def history(self, name: str) -> list[HistoryEntry]:
        """Every event of the model, oldest first."""
        return [_entry(self, e) for e in self.of(name)]


def _entry(registry: Registry, event: TagEvent) -> HistoryEntry:
    record = event.record
    action = event.action
    if action == "assign":
        action = "rollback" if record.get("action") == "rollback" else "promote"
    version = event.version or registry.version_at(event.name, event.commit)
    gate = record.get("gate")
    return HistoryEntry(event.time, action, version, event.stage, event.commit, event.tagger,
                        event.tag, bool(record.get("forced")), record.get("reason"),
                        gate if isinstance(gate, dict) else None)
