"""A model's life as one ordered list of events, from the registry's tags (registrations,
promotions, rollbacks, unassignments, deprecations) and the shared findings (refused gates,
drift, continuous-training steps): the material of `audit` and of the KPIs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.history import notes as shared
from mlbuild.registry.state import Registry


@dataclass(frozen=True)
class Event:
    """One thing that happened to a model."""

    time: int
    model: str
    kind: str  # register, promote, rollback, unassign, deregister, deprecate, gate, drift, ct
    version: str | None
    stage: str | None
    commit: str
    who: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def gate_passed(self) -> bool | None:
        """The recorded gate verdict (None: none recorded)."""
        gate = self.detail.get("gate")
        return bool(gate.get("passed")) if isinstance(gate, dict) else None

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        return {"time": self.time, "model": self.model, "kind": self.kind,
                "version": self.version, "stage": self.stage, "commit": self.commit,
                "who": self.who, "detail": self.detail}


@dataclass
class Facts:
    """The registry and the shared findings, read once."""

    registry: Registry
    notes: list[shared.Note]

    @classmethod
    def read(cls, root: Path) -> Facts:
        """Read both from the repository."""
        return cls(Registry.read(root), shared.read(root))

    def models(self) -> list[str]:
        """Every model with a tag or a finding."""
        named = {str(n.doc.get("model")) for n in self.notes if n.doc.get("model")}
        return sorted(set(self.registry.names()) | named)

    def events(self, model: str) -> list[Event]:
        """The model's events, oldest first (tags before findings of the same second)."""
        found = [_tag_event(model, h.time, h.action, h.version, h.stage, h.commit, h.who,
                            h.tag, h.forced, h.reason, h.gate, self._payload(h.tag))
                 for h in self.registry.history(model)]
        found.extend(Event(n.time, model, n.kind, _version(n), n.doc.get("stage"), n.commit,
                           n.who, {k: v for k, v in n.doc.items()
                                   if k not in ("kind", "time", "who", "model")})
                     for n in self.notes if n.doc.get("model") == model)
        return sorted(found, key=lambda e: (e.time, e.kind in ("gate", "drift", "ct")))

    def _payload(self, tag: str) -> dict[str, Any]:
        event = next((e for e in self.registry.events if e.tag == tag), None)
        return event.record if event is not None else {}


def _version(note: shared.Note) -> str | None:
    value = note.doc.get("version") or note.doc.get("new_version")
    return str(value) if value else None


def _tag_event(model: str, time: int, action: str, version: str | None, stage: str | None,
               commit: str, who: str, tag: str, forced: bool, reason: str | None,
               gate: dict[str, Any] | None, payload: dict[str, Any]) -> Event:
    detail: dict[str, Any] = {"tag": tag}
    if forced:
        detail["forced"] = True
    if reason:
        detail["reason"] = reason
    if gate is not None:
        detail["gate"] = gate
    for key in ("replaces", "md5", "metrics", "producer", "path"):
        if payload.get(key) is not None:
            detail[key] = payload[key]
    return Event(time, model, action, version, stage, commit, who, detail)
