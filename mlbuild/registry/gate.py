"""The promotion gate: each check a version must pass to enter a stage, with its values, so
that the report can be printed, kept in the tag annotation and in the run history."""

from __future__ import annotations

import operator
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlbuild.contracts import Contract, Side, validate
from mlbuild.errors import ConfigError, MlbuildError, did_you_mean
from mlbuild.registry.config import Gate, Margin
from mlbuild.registry.evidence import Checked, Evidence
from mlbuild.store.cache import Cache

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Check:
    """One check of a gate and what it found."""

    check: str  # metric, beat_current, contracts, verify, remote
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    """Every check of one promotion, in order."""

    model: str
    version: str
    stage: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """All checks passed."""
        return all(c.passed for c in self.checks)

    def to_doc(self) -> dict[str, Any]:
        """The JSON form kept in the annotation and the run history."""
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def check_metrics_known(gate: Gate, evidence: Evidence) -> None:
    """A gate that names a metric no stage writes is a configuration mistake (exit 2)."""
    for metric, key in gate.metrics():
        if metric not in evidence.metrics:
            known = ", ".join(sorted(evidence.metrics)) or "none"
            raise ConfigError(
                f"{key}: no stage writes a metric '{metric}'"
                f"{did_you_mean(metric, evidence.metrics)} (metrics files at "
                f"{evidence.commit[:12]} hold: {known})")


def threshold_checks(gate: Gate, evidence: Evidence) -> list[Check]:
    """Each `metric OP value` against the version's metrics."""
    checks = []
    for t in gate.thresholds:
        value = evidence.metrics[t.metric]
        checks.append(Check("metric", COMPARE[t.op](value, t.value),
                            f"{t.metric} {t.op} {t.value:g}: {value:g}"))
    return checks


def _beats(margin: Margin, new: float, old: float) -> tuple[bool, float, float]:
    delta = new - old if margin.greater_is_better else old - new
    need = margin.min_delta * abs(old) if margin.relative else margin.min_delta
    return delta > 0 and delta >= need, delta, need


def beat_checks(gate: Gate, evidence: Evidence, current: tuple[str, Evidence] | None,
                ) -> list[Check]:
    """Each margin over the version holding the stage (none holds it: nothing to beat)."""
    if not gate.beat:
        return []
    if current is None:
        return [Check("beat_current", True, "no version holds the stage yet")]
    version, held = current
    checks = []
    for m in gate.beat:
        if m.metric not in held.metrics:
            checks.append(Check("beat_current", False, f"{m.metric}: the current {version} "
                                "has no such metric to compare with"))
            continue
        ok, delta, need = _beats(m, evidence.metrics[m.metric], held.metrics[m.metric])
        way = "higher" if m.greater_is_better else "lower"
        margin = f"{m.min_delta:g}{' relative' if m.relative else ''}"
        checks.append(Check("beat_current", ok, (
            f"{m.metric} beats {version} ({way} is better, min delta {margin}): "
            f"{evidence.metrics[m.metric]:g} vs {held.metrics[m.metric]:g}, delta {delta:+g}"
            + (f", needed {need:g}" if need else ""))))
    return checks


def _contract_problem(root: Path, cache: Cache, item: Checked, scratch: Path) -> str | None:
    obj = cache.file_of(item.md5) if item.md5 else None
    if obj is None:
        return (f"{item.path} (stage {item.stage}): not in the local cache "
                "('mlbuild pull' fetches it)")
    copy = scratch / item.stage / item.side / Path(item.path).name  # the suffix picks a reader
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(obj, copy)
    try:
        validate(root, Contract(str(copy), item.schema, Side(item.side)), item.stage)
    except MlbuildError as exc:
        return " ".join(str(exc).replace(str(copy), item.path).split())[:300]
    return None


def contract_check(root: Path, evidence: Evidence) -> Check:
    """The contracts of the model's stage and everything upstream, on the data they had."""
    if not evidence.contracts:
        return Check("contracts", True, "no contracts declared upstream of the model")
    cache = Cache(root)
    with tempfile.TemporaryDirectory(prefix="mlbuild-gate-") as tmp:
        problems = [p for item in evidence.contracts
                    if (p := _contract_problem(root, cache, item, Path(tmp)))]
    if problems:
        return Check("contracts", False, problems[0])
    return Check("contracts", True, f"{len(evidence.contracts)} contract(s) pass: " + ", ".join(
        f"{c.side} {c.path}" for c in evidence.contracts))
