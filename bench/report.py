"""Result rows, targets, and the markdown / JSON reports."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Series


@dataclass(frozen=True)
class Target:
    """A goal for a row: on the ratio mlbuild/baseline, or on mlbuild's own median."""

    kind: str  # "ratio" or "abs"
    limit: float
    unit: str = "s"

    def describe(self) -> str:
        """Human-readable form, e.g. 'ratio ≤ 0.25' or 'mlbuild ≤ 1.5 s'."""
        if self.kind == "ratio":
            return f"ratio ≤ {self.limit:g}"
        return f"mlbuild ≤ {self.limit:g} {self.unit}"


@dataclass
class Row:
    """One line of the results table."""

    workload: str
    measurement: str
    mine: Series | None
    other: Series | None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """mlbuild median / baseline median."""
        if not self.mine or not self.other or not self.mine.values or not self.other.values:
            return None
        if self.other.median <= 0:
            return None
        return self.mine.median / self.other.median

    def met(self) -> bool | None:
        """Whether the target is met (None when there is no target or no data)."""
        if self.target is None or not self.mine or not self.mine.values:
            return None
        value = self.ratio if self.target.kind == "ratio" else self.mine.median
        if value is None or math.isnan(value):
            return None
        return value <= self.target.limit

    @property
    def cpu_ratio(self) -> float | None:
        """mlbuild median CPU time / baseline median CPU time."""
        mine = self.mine.cpu_median if self.mine and self.mine.unit == "s" else None
        other = self.other.cpu_median if self.other and self.other.unit == "s" else None
        if mine is None or other is None or other <= 0:
            return None
        return mine / other

    def cpu_disagrees(self) -> bool:
        """A ratio target whose verdict flips when CPU time is compared instead of wall time."""
        met, cpu = self.met(), self.cpu_ratio
        if met is None or cpu is None or self.target is None or self.target.kind != "ratio":
            return False
        return met != (cpu <= self.target.limit)


@dataclass
class Report:
    """Everything one benchmark run produced."""

    mode: str
    reps: int
    facts: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def fmt(value: float, unit: str) -> str:
    """A median for the table."""
    if math.isnan(value):
        return "—"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    return f"{value:.3g} {unit}"


def _cell(series: Series | None) -> str:
    if series is None or not series.values:
        return "—"
    text = fmt(series.median, series.unit)
    return f"{text} ({series.label})" if series.label else text


def _rss(series: Series | None) -> str:
    peak = series.peak_rss if series else None
    return "—" if peak is None else f"{peak:.0f} MB"


def _cpu(row: Row) -> str:
    ratio = row.cpu_ratio
    if ratio is None or not row.mine or not row.other:
        return "—"
    return f"{row.mine.cpu_median:.2f} / {row.other.cpu_median:.2f} = {ratio:.3f}"


def _reps(row: Row) -> str:
    mine = len(row.mine.values) if row.mine else 0
    other = len(row.other.values) if row.other else 0
    return f"{mine}/{other}"


def _met(row: Row) -> str:
    met = row.met()
    if met is None:
        return "—"
    verdict = "yes" if met else "**NO**"
    if row.cpu_disagrees():
        verdict += " (by CPU time: " + ("no" if met else "yes") + ")"
    return verdict


HEADER = ("| workload | measurement | mlbuild median | DVC / baseline median | ratio | target "
          "| met? | CPU s mlbuild / DVC = ratio | reps | peak RSS mlbuild | peak RSS DVC |\n"
          "| --- | --- | ---: | ---: | ---: | --- | :---: | ---: | ---: | ---: | ---: |")


def table(rows: list[Row]) -> str:
    """The markdown results table."""
    lines = [HEADER]
    for row in rows:
        ratio = row.ratio
        measurement = row.measurement + (f" ({row.note})" if row.note else "")
        lines.append(
            f"| {row.workload} | {measurement} | {_cell(row.mine)} | {_cell(row.other)} "
            f"| {'—' if ratio is None else f'{ratio:.3f}'} "
            f"| {row.target.describe() if row.target else '—'} | {_met(row)} | {_cpu(row)} "
            f"| {_reps(row)} "
            f"| {_rss(row.mine)} | {_rss(row.other)} |"
        )
    return "\n".join(lines)


def markdown(report: Report) -> str:
    """The whole RESULTS.md."""
    facts = "\n".join(f"- **{key}**: {value}" for key, value in report.facts.items())
    with_target = [r for r in report.rows if r.met() is not None]
    met = sum(1 for r in with_target if r.met())
    parts = [
        "# mlbuild vs DVC: benchmark results",
        "",
        f"Generated by `python -m bench` ({report.mode} mode, {report.reps} repetition(s) per "
        "measurement unless the reps column says otherwise). Values are medians over the "
        "repetitions; ratio = mlbuild median / baseline median (wall clock; the targets apply "
        "to it); CPU s is the median user+system CPU time of the command and the processes it "
        "waited for, which is far less sensitive to other load on the machine; peak RSS is "
        "the largest "
        "`ru_maxrss` of the command's process tree over the repetitions. "
        "See `bench/README.md` for the method.",
        "",
        f"**Targets met: {met} of {len(with_target)}** (on wall-clock medians). "
        f"{sum(1 for r in report.rows if r.cpu_disagrees())} ratio verdict(s) would flip on "
        "CPU time, shown in the met? column: treat those as not robust.",
        "",
        table(report.rows),
        "",
        "## Machine",
        "",
        facts,
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in report.notes],
    ]
    if report.errors:
        parts += ["", "## Errors", "", *[f"```\n{err}\n```" for err in report.errors]]
    return "\n".join(parts) + "\n"


def to_json(report: Report) -> str:
    """Raw samples, for later analysis."""

    def series(s: Series | None) -> object:
        if s is None:
            return None
        return {"values": s.values, "rss_mb": s.rss_mb, "cpu": s.cpu, "unit": s.unit,
                "label": s.label,
                "median": s.median if s.values else None}

    return json.dumps({
        "mode": report.mode, "reps": report.reps, "facts": report.facts,
        "rows": [{"workload": r.workload, "measurement": r.measurement, "note": r.note,
                  "mlbuild": series(r.mine), "baseline": series(r.other), "ratio": r.ratio,
                  "target": r.target.describe() if r.target else None, "met": r.met(),
                  "target_spec": ({"kind": r.target.kind, "limit": r.target.limit,
                                   "unit": r.target.unit} if r.target else None)}
                 for r in report.rows],
        "notes": report.notes, "errors": report.errors,
    }, indent=2)


def _target_from_text(text: str | None) -> Target | None:
    """Parse Target.describe()'s output back ('ratio ≤ 0.25', 'mlbuild ≤ 1.5 s')."""
    if not text:
        return None
    kind, _, rest = text.partition(" ≤ ")
    limit, _, unit = rest.partition(" ")
    return Target("ratio" if kind == "ratio" else "abs", float(limit), unit or "s")


def from_json(text: str) -> Report:
    """A Report back from to_json's output (to re-render RESULTS.md without rerunning)."""
    data: dict[str, Any] = json.loads(text)

    def series(doc: dict[str, Any] | None) -> Series | None:
        if doc is None:
            return None
        return Series(values=[float(v) for v in doc["values"]],
                      rss_mb=[float(v) for v in doc["rss_mb"]],
                      cpu=[float(v) for v in doc.get("cpu", [])],
                      unit=str(doc["unit"]), label=str(doc["label"]))

    rows = []
    for row in data["rows"]:
        spec = row.get("target_spec")
        target = Target(**spec) if spec else _target_from_text(row.get("target"))
        rows.append(Row(row["workload"], row["measurement"], series(row["mlbuild"]),
                        series(row["baseline"]), target, row.get("note", "")))
    return Report(mode=data["mode"], reps=data["reps"], facts=data["facts"], rows=rows,
                  notes=data["notes"], errors=data["errors"])


def write(report: Report, out: Path) -> None:
    """Write RESULTS.md to *out* and the raw samples to bench/out/results-<mode>.json."""
    out.write_text(markdown(report), encoding="utf-8")
    raw = Path(__file__).resolve().parent / "out"
    raw.mkdir(exist_ok=True)
    (raw / f"results-{report.mode}.json").write_text(to_json(report), encoding="utf-8")
