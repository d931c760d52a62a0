"""The four triggers of continuous training, each judged against the baseline (the version
that holds the target stage, else the latest): raw data whose `.dvc` hash differs from the
baseline's, pipeline code or params that differ (committed or not), a schedule that is due,
and drift in what the baseline version was served."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError


@dataclass(frozen=True)
class Baseline:
    """The version continuous training would replace (all None: nothing registered yet)."""

    model: str
    version: str | None
    commit: str | None
    stage: str | None  # the stage it holds, if it holds the target one
    registered: int | None  # when it was registered (epoch seconds)


@dataclass(frozen=True)
class Trigger:
    """One trigger's verdict, with the evidence in words."""

    name: str
    fired: bool
    reason: str
    skipped: bool = False  # could not be judged (the reason says why); never fires

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        return {"trigger": self.name, "fired": self.fired, "skipped": self.skipped,
                "reason": self.reason}


def baseline(root: Path, model: str, stage: str) -> Baseline:
    """The holder of *stage*, else the latest version, else nothing."""
    from mlbuild.registry.state import Registry

    registry = Registry.read(root)
    holder = registry.holder(model, stage)
    version = holder or registry.latest(model)
    if version is None:
        return Baseline(model, None, None, None, None)
    event = registry.versions(model)[version]
    return Baseline(model, version, event.commit, stage if holder else None, event.time)


def _dvc_files(root: Path) -> list[str]:
    from mlbuild.gitrepo import git

    listed = git(root, "ls-files", "-z", "--", "*.dvc").decode().split("\0")
    return sorted(p for p in listed if p)


def _outs_md5(text: str | None) -> list[str]:
    from mlbuild.dvcfmt.yamlio import parse_yaml

    doc = parse_yaml(text, ".dvc") if text else None
    outs = doc.get("outs") if isinstance(doc, dict) else None
    return [str(o.get("md5")) for o in outs or [] if isinstance(o, dict)]


def _data_files_changed(root: Path, commit: str) -> list[str]:
    from mlbuild.registry.evidence import show

    changed = []
    for path in _dvc_files(root):
        before, now = _outs_md5(show(root, commit, path)), _outs_md5(show(root, None, path))
        if before != now:
            changed.append(f"{path} ({'new' if not before else 'hash ' + before[0][:8]} -> "
                           f"{now[0][:8] if now else 'none'})")
    return changed


def _lock_changes(root: Path, model: str, commit: str) -> tuple[list[str], list[str]]:
    """(data, code) dependencies of the model's stages whose dvc.lock entry differs between
    the baseline commit and the working tree."""
    from mlbuild.engine.staleness import Why, dep_kind
    from mlbuild.registry.evidence import artifact_path, lock_at, upstream_stages

    path = artifact_path(root, model)
    now, before = lock_at(root, None), lock_at(root, commit)
    producer = next((s for s, e in now.items() if path in e.outs), None)
    data: list[str] = []
    code: list[str] = []
    for stage in upstream_stages(now, producer) if producer else []:
        old, new = before.get(stage), now[stage]
        if old is None:
            code.append(f"stage {stage} is new")
            continue
        for dep, info in new.deps.items():
            if old.deps.get(dep) != info:
                (code if dep_kind(dep) == Why.CODE else data).append(f"{stage}: {dep}")
        if old.params != new.params or old.cmd != new.cmd:
            code.append(f"{stage}: {'params' if old.params != new.params else 'cmd'}")
    return data, code


def _stale(root: Path) -> tuple[list[str], list[str]]:
    """(data, code) reasons the working tree's stages are stale (changed, not yet built)."""
    from mlbuild import api

    data: list[str] = []
    code: list[str] = []
    for verdict in api.status(root):
        for why in verdict.why:
            kind = why["kind"]
            if kind == "data":
                data.append(f"{verdict.stage}: {why['detail']}")
            elif kind in ("code", "params", "cmd", "env"):
                code.append(f"{verdict.stage}: {why['detail']}")
    return data, code


def _listed(items: list[str]) -> str:
    return "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")


def data_and_code(root: Path, base: Baseline) -> tuple[Trigger, Trigger]:
    """Whether the raw data, and the pipeline code or params, differ from the baseline's."""
    if base.commit is None:
        why = f"model '{base.model}' has no registered version yet"
        return Trigger("data", True, why), Trigger("code", True, why)
    stale_data, stale_code = _stale(root)
    lock_data, lock_code = _lock_changes(root, base.model, base.commit)
    data = _data_files_changed(root, base.commit) + lock_data + stale_data
    code = lock_code + stale_code
    since = f"since {base.version} ({base.commit[:10]})"
    return (Trigger("data", bool(data), f"changed {since}: {_listed(data)}" if data
                    else f"unchanged {since}"),
            Trigger("code", bool(code), f"changed {since}: {_listed(code)}" if code
                    else f"unchanged {since}"))


def _last_training(root: Path) -> float | None:
    """When continuous training last built something (the history store)."""
    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(root)
    try:
        runs = index.recent(200, "ct")
    finally:
        index.close()
    built = [r.started for r in runs if (r.detail.get("ct") or {}).get("built")]
    return max(built) if built else None


def schedule(root: Path, base: Baseline, every: float | None, now: float | None = None
             ) -> Trigger:
    """Due when the last training (by ct, else the baseline's registration) is *every* ago."""
    if every is None:
        return Trigger("schedule", False, "no schedule (mlbuild.yaml ct.schedule)", True)
    now = time.time() if now is None else now
    last = _last_training(root) or (float(base.registered) if base.registered else None)
    if last is None:
        return Trigger("schedule", True, "never trained: due")
    age = now - last
    due = age >= every
    return Trigger("schedule", due, f"last trained {age / 3600:.1f} h ago; every "
                                    f"{every / 3600:g} h: {'due' if due else 'not due'}")


def drift(root: Path, base: Baseline, window: float | None, labels: str | None = None
          ) -> Trigger:
    """Drift in the traffic the baseline version answered (over *window* seconds), or its
    metric on the labelled part of it below the registered one."""
    from mlbuild.monitor.check import Request, check

    if base.version is None:
        return Trigger("drift", False, "no version is serving", True)
    try:
        report = check(root, Request(f"{base.model}@{base.version}", None, None, window,
                                     labels=root / labels if labels else None,
                                     only_version=True)).report
    except UsageError as exc:
        return Trigger("drift", False, str(exc), True)
    rows = report.data.columns[0].current_rows if report.data.columns else 0
    if report.degraded and report.performance is not None:
        perf = report.performance
        return Trigger("drift", True, f"{perf.metric} on {perf.rows} labelled served rows "
                                      f"{perf.current:.4g} is below the registered "
                                      f"{perf.registered:g}")
    if report.drifted:
        return Trigger("drift", True, f"{len(report.drifted_columns())} of "
                                      f"{len(report.data.columns)} features drifted over {rows}"
                                      f" served rows: {', '.join(report.drifted_columns()[:5])}")
    return Trigger("drift", False, f"no drift over {rows} served rows")
