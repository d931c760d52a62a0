"""`mlbuild kpi`: the five MLOps KPIs of the mission, from what every clone shares: git history
(commits, authors, dates, ct's trailers), the registry's tags (promotions, rollbacks) and the
shared findings in git notes (refused gates, drift, failed retrains). Durations are given as
median and p90 (nearest rank) in seconds.

Incidents are grouped the way an on-call team counts them: an incident (or a drift episode)
opens at the first failure (or drift finding) after the model's last good promotion to the
stage and closes at the next one; later failures while it is open belong to it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.lineage import gitfacts
from mlbuild.lineage.events import Event, Facts

DAY = 86400
DEFINITIONS = {
    "commits_per_day": "commits that change pipeline code (dvc.yaml, params, configs/, stages/ "
                       "or a git-tracked file a stage depends on), per author, divided by the "
                       "window's days",
    "cycle_time": "first commit of a change to the model's code or params -> the prod "
                  "promotion of the version that contains it",
    "defect_rate": "share of prod promotions later rolled back, or replaced after a drift "
                   "finding or failure while they held prod, or replaced by a retrain that "
                   "drift triggered",
    "time_to_repair": "a failed build, failed gate or rollback -> the next good prod promotion "
                      "(gate passed, not forced)",
    "time_to_respond": "drift detected (monitor or ct) -> a new model version in prod",
}


@dataclass(frozen=True)
class Window:
    """[start, end) in seconds; *days* is its length in days (at least one)."""

    start: float
    end: float

    @property
    def days(self) -> int:
        """Whole days in the window (a partial day counts)."""
        return max(1, math.ceil((self.end - self.start) / DAY))

    def has(self, seconds: float) -> bool:
        """The moment falls in the window."""
        return self.start <= seconds < self.end


def durations(values: list[float]) -> dict[str, Any]:
    """Count, median and p90 (nearest rank) of durations in seconds."""
    if not values:
        return {"count": 0, "median": None, "p90": None}
    ranked = sorted(values)
    return {"count": len(ranked), "median": statistics.median(ranked),
            "p90": ranked[math.ceil(0.9 * len(ranked)) - 1]}


def pipeline_code(root: Path, files: tuple[str, ...], code: set[str]) -> bool:
    """A commit that changes pipeline code (see DEFINITIONS)."""
    return any(f in code or f == "dvc.yaml" or f.startswith(("configs/", "stages/"))
               or (f.startswith("params") and f.endswith((".yaml", ".yml", ".json", ".toml")))
               for f in files)


def _code_files(root: Path) -> set[str]:
    """git-tracked files the stages depend on, at HEAD."""
    from mlbuild.registry.evidence import lock_at

    tracked = gitfacts.tracked(root, "HEAD")
    return {d for e in lock_at(root, "HEAD").values() for d in e.deps if d in tracked}


def commits_per_day(commits: list[gitfacts.Commit], window: Window, root: Path,
                    code: set[str]) -> dict[str, Any]:
    """The first KPI, per author and overall (the mean over authors)."""
    per: dict[str, int] = {}
    for commit in commits:
        if window.has(commit.time) and pipeline_code(root, commit.files, code):
            per[commit.author] = per.get(commit.author, 0) + 1
    authors = {a: {"commits": n, "per_day": n / window.days} for a, n in sorted(per.items())}
    total = sum(per.values())
    return {"days": window.days, "authors": authors, "commits": total,
            "per_day_per_author": total / window.days / len(per) if per else 0.0}


def _prod_assignments(events: list[Event], stage: str) -> list[Event]:
    return [e for e in events if e.stage == stage and e.kind in ("promote", "rollback")]


def _good(event: Event) -> bool:
    return event.kind == "promote" and bool(event.gate_passed) and not event.detail.get("forced")


def cycle_times(root: Path, events: list[Event], window: Window, code: set[str],
                stage: str) -> list[float]:
    """Development cycle time of every promotion to *stage* in the window that brought a code
    or params change: from the first commit not already in an earlier version of the stage."""
    found: list[float] = []
    earlier: list[str] = []
    for event in _prod_assignments(events, stage):
        if event.kind == "promote" and window.has(event.time):
            span = gitfacts.commits(root, event.commit, *(f"^{c}" for c in earlier))
            changes = [c.time for c in span if pipeline_code(root, c.files, code)]
            if changes:
                found.append(float(event.time - min(changes)))
        earlier.append(event.commit)
    return found


def _finding_about(event: Event, version: str | None) -> bool:
    if event.kind == "drift":
        return event.version == version
    return (event.kind == "ct" and event.detail.get("serving") == version
            and "drift" in (event.detail.get("fired") or []))


def defects(events: list[Event], window: Window, stage: str,
            triggers: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """Promotions to *stage* in the window, and those that proved defective."""
    moves = _prod_assignments(events, stage)
    promotions, bad = 0, []
    for i, move in enumerate(moves):
        if move.kind != "promote" or not window.has(move.time):
            continue
        promotions += 1
        after = moves[i + 1] if i + 1 < len(moves) else None
        if after is None:
            continue
        found = any(_finding_about(e, move.version) for e in events
                    if move.time <= e.time <= after.time)
        if (after.kind == "rollback" or "drift" in triggers.get(after.commit, ()) or found):
            bad.append(move.version)
    return {"promotions": promotions, "defects": len(bad), "defective": bad,
            "rate": len(bad) / promotions if promotions else None}


def _incident(event: Event, stage: str) -> bool:
    if event.kind == "gate":
        return event.stage == stage
    if event.kind == "ct":
        outcome = str(event.detail.get("outcome") or "")
        return bool(event.detail.get("failed")) and not outcome.startswith("gate refused")
    return event.kind == "rollback" and event.stage == stage


def _drift(event: Event) -> bool:
    return event.kind == "drift" or (event.kind == "ct"
                                     and "drift" in (event.detail.get("fired") or []))


def episodes(events: list[Event], window: Window, opens: Any, closes: Any
             ) -> tuple[list[float], int]:
    """Durations of the episodes opened in the window (first opening event -> next closing
    event), and how many are still open."""
    found, start = [], None
    for event in events:
        if start is None and opens(event):
            start = event.time
        elif start is not None and closes(event):
            if window.has(start):
                found.append(float(event.time - start))
            start = None
    return found, int(start is not None and window.has(start))


def model_kpis(root: Path, facts: Facts, model: str, window: Window, code: set[str],
               stage: str, triggers: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """Every KPI but commits per day, for one model (and the raw durations to pool)."""
    events = facts.events(model)
    cycles = cycle_times(root, events, window, code, stage)
    repair, repair_open = episodes(events, window, lambda e: _incident(e, stage),
                                   lambda e: _good(e) and e.stage == stage)
    respond, respond_open = episodes(events, window, _drift,
                                     lambda e: e.kind == "promote" and e.stage == stage)
    return {"cycle_time": durations(cycles), "defect_rate": defects(events, window, stage,
                                                                    triggers),
            "time_to_repair": {**durations(repair), "open": repair_open},
            "time_to_respond": {**durations(respond), "open": respond_open},
            "_raw": {"cycle_time": cycles, "time_to_repair": repair,
                     "time_to_respond": respond}}


def _pool(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pooled: dict[str, Any] = {}
    for key in ("cycle_time", "time_to_repair", "time_to_respond"):
        pooled[key] = durations([v for m in models.values() for v in m["_raw"][key]])
        if key != "cycle_time":
            pooled[key]["open"] = sum(m[key]["open"] for m in models.values())
    promotions = sum(m["defect_rate"]["promotions"] for m in models.values())
    bad = sum(m["defect_rate"]["defects"] for m in models.values())
    pooled["defect_rate"] = {"promotions": promotions, "defects": bad,
                             "rate": bad / promotions if promotions else None}
    return pooled


@dataclass
class Shared:
    """The facts every KPI reads, read once."""

    root: Path
    commits: list[gitfacts.Commit]
    facts: Facts
    code: set[str]
    triggers: dict[str, tuple[str, ...]]

    @classmethod
    def read(cls, root: Path, stage: str) -> Shared:
        """Read them; a repository without commits or without a registry is refused."""
        commits = gitfacts.commits(root)
        if not commits:
            raise UsageError("no commits yet: the KPIs are computed from the git history")
        facts = Facts.read(root)
        if not facts.registry.names():
            raise UsageError("no registry yet: no model version is registered (register one "
                             "with 'mlbuild model register NAME'); the KPIs follow versions "
                             f"to '{stage}'")
        return cls(root, commits, facts, _code_files(root),
                   {c.sha: c.triggers for c in commits if c.triggers})

    def first_day(self) -> float:
        """Midnight (UTC) of the first commit's day."""
        return float(min(c.time for c in self.commits) // DAY * DAY)

    def window(self, window: Window, models: list[str], stage: str) -> dict[str, Any]:
        """Every KPI over one window."""
        found = {m: model_kpis(self.root, self.facts, m, window, self.code, stage,
                               self.triggers) for m in models}
        doc = {"window": {"since": window.start, "until": window.end, "days": window.days},
               "stage": stage, "commits_per_day": commits_per_day(
                   self.commits, window, self.root, self.code),
               "overall": _pool(found), "models": found}
        for value in found.values():
            value.pop("_raw")
        return doc


def _models(shared: Shared, model: str | None) -> list[str]:
    names = shared.facts.models()
    if model is not None and model not in names:
        from mlbuild.errors import did_you_mean

        raise UsageError(f"unknown model '{model}'{did_you_mean(model, names)} (in the "
                         f"registry: {', '.join(names)})")
    return [model] if model else names


def kpis(root: Path, since: float | None, until: float | None, model: str | None,
         stage: str = "prod") -> dict[str, Any]:
    """The KPI document (what --json prints)."""
    shared = Shared.read(root, stage)
    models = _models(shared, model)
    window = Window(since if since is not None else shared.first_day(),
                    until if until is not None else float(_now(root)))
    return {**shared.window(window, models, stage), "shallow": gitfacts.shallow(root),
            "definitions": DEFINITIONS}


def series(root: Path, days: int = 7, stage: str = "prod") -> list[dict[str, Any]]:
    """The KPIs over consecutive windows of *days* days, from the first commit's day to now
    (the dashboard's charts over time)."""
    shared = Shared.read(root, stage)
    models = _models(shared, None)
    start, end = shared.first_day(), float(_now(root))
    found = []
    while start < end:
        window = Window(start, min(end, start + days * DAY))
        found.append(shared.window(window, models, stage))
        start += days * DAY
    return found


def _now(root: Path) -> int:
    from mlbuild.history.notes import git_now

    return git_now(root)[0] + 1
