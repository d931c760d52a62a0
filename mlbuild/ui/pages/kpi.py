"""The KPI page: the five MLOps KPIs over the whole history (what `mlbuild kpi` prints), each
with its definition, and each as a chart over time (one point per week)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.ui.layout import esc, note, table
from mlbuild.ui.pages import Page
from mlbuild.ui.svg import Axis, Series, chart

HOUR = 3600.0
DURATIONS = (("cycle_time", "development cycle time"), ("time_to_repair", "time to repair"),
             ("time_to_respond", "time to respond"))


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value / HOUR:.1f} h"


def _row(scope: str, values: dict[str, Any]) -> list[str]:
    rate = values["defect_rate"]
    cells = [f"<b>{esc(scope)}</b>"]
    for key, _label in DURATIONS:
        v = values[key]
        cells.append(f"{_hours(v['median'])} / {_hours(v['p90'])} (n={v['count']})")
    cells.append(f"{rate['defects']}/{rate['promotions']}"
                 + (f" = {rate['rate']:.0%}" if rate["rate"] is not None else ""))
    return cells


def _charts(weeks: list[dict[str, Any]]) -> str:
    starts = [w["window"]["since"] for w in weeks]
    x = Axis("week starting", "time")
    durations = [Series(label, tuple((t, w["overall"][key]["median"] / HOUR)
                                     for t, w in zip(starts, weeks, strict=True)
                                     if w["overall"][key]["median"] is not None))
                 for key, label in DURATIONS]
    defects = Series("defect rate", tuple(
        (t, 100 * w["overall"]["defect_rate"]["rate"]) for t, w in zip(starts, weeks,
                                                                        strict=True)
        if w["overall"]["defect_rate"]["rate"] is not None))
    commits = Series("commits per day per author", tuple(
        (t, w["commits_per_day"]["per_day_per_author"]) for t, w in zip(starts, weeks,
                                                                         strict=True)))
    return ("<div class='charts'>"
            + chart(durations, x, Axis("median, hours"), "durations (median per week)")
            + chart([defects], x, Axis("% of prod promotions"), "defect rate per week")
            + chart([commits], x, Axis("commits"), "commits per day per author")
            + "</div>")


def render(root: Path, query: Mapping[str, str]) -> str:
    """The KPI table (overall and per model), definitions, and the weekly charts."""
    from mlbuild.lineage.kpi import kpis, series

    try:
        doc = kpis(root, None, None, None)
    except UsageError as exc:
        return note(str(exc))
    header = ["scope", *(f"{label} (median / p90)" for _, label in DURATIONS), "defect rate"]
    rows = [_row("overall", doc["overall"])] + [_row(m, v) for m, v in doc["models"].items()]
    cpd = doc["commits_per_day"]
    authors = [[esc(a), str(v["commits"]), f"{v['per_day']:.2f}"]
               for a, v in cpd["authors"].items()]
    definitions = "".join(f"<li><b>{esc(k.replace('_', ' '))}</b>: {esc(v)}</li>"
                          for k, v in doc["definitions"].items())
    return (f"<p>From the first commit's day: {cpd['days']} day(s); stage "
            f"<b>{esc(doc['stage'])}</b>.</p>" + table(header, rows)
            + "<h2>Commits to pipeline code</h2>"
            + table(["author", "commits", "per day"], authors, [False, True, True])
            + f"<p>Per author per day: <b>{cpd['per_day_per_author']:.2f}</b></p>"
            + "<h2>Over time</h2>" + _charts(series(root, 7))
            + f"<h2>Definitions</h2><ul>{definitions}</ul>")


PAGE = Page("/kpi", "KPIs", render)
