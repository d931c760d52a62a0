"""The experiments page: the table `mlbuild exp show` prints (one row per experiment of this
commit, the params that differ, every metric) and a metric against each varied param."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlencode

from mlbuild.errors import did_you_mean
from mlbuild.ui.layout import badge, esc, note, number, table
from mlbuild.ui.pages import BadQueryError, Page
from mlbuild.ui.svg import Axis, Series, chart

if TYPE_CHECKING:
    from mlbuild.experiments.show import Row, Table

MAX_PLOTS = 12  # `exp plot` draws as many panels


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rows(result: Table) -> list[list[str]]:
    return [[(badge("baseline", "info") + " " if r.baseline else "") + esc(r.name),
             f"<code>{esc(r.rev[:10])}</code>",
             *(number(r.metrics.get(k)) for k in result.metrics),
             *(number(r.params.get(k)) for k in result.params)] for r in result.rows]


def _points(rows: list[Row], param: str, metric: str, axis: Axis) -> Series:
    pairs, tips = [], []
    for r in rows:
        x, y = r.params.get(param), r.metrics.get(metric)
        if not _is_number(y) or x is None:
            continue
        where = axis.categories.index(str(x)) if axis.kind == "category" else x
        pairs.append((float(where), float(y)))
        tips.append(f"{r.name}: {param}={x}, {metric}={y:.5g}")
    return Series("baseline" if rows and rows[0].baseline else "experiments", tuple(pairs),
                  tuple(tips))


def plot(result: Table, metric: str, param: str) -> str:
    """*metric* against *param*, a point per experiment, the baseline set apart."""
    values = [r.params.get(param) for r in result.rows if r.params.get(param) is not None]
    axis = (Axis(param) if all(_is_number(v) for v in values) else
            Axis(param, "category", tuple(sorted({str(v) for v in values}))))
    groups = [[r for r in result.rows if not r.baseline], [r for r in result.rows if r.baseline]]
    series = [_points(g, param, metric, axis) for g in groups if g]
    return chart(series, axis, Axis(metric), f"{metric} by {param}", lines=False)


def _metric(result: Table, query: Mapping[str, str]) -> str | None:
    chosen = query.get("metric")
    if chosen is None:
        return result.metrics[0] if result.metrics else None
    if chosen not in result.metrics:
        raise BadQueryError(f"metric={chosen!r}: no experiment has this metric"
                         f"{did_you_mean(chosen, result.metrics)}")
    return chosen


def _choices(result: Table, metric: str) -> str:
    links = [esc(m) if m == metric else
             f'<a href="?{esc(urlencode({"metric": m}))}">{esc(m)}</a>' for m in result.metrics]
    return "<p>Plot: " + " · ".join(links) + "</p>"


def render(root: Path, query: Mapping[str, str]) -> str:
    """The table (?sort=METRIC, ?asc=1 for smallest first) and plots (?metric=NAME)."""
    from mlbuild.experiments.show import table as exp_table

    result = exp_table(root, query.get("sort") or None, query.get("asc") == "1")
    header = ["experiment", "rev", *result.metrics, *result.params]
    numeric = [False, False, *([True] * (len(result.metrics) + len(result.params)))]
    parts = [f"<p>{len(result.rows)} row(s): the baseline and its experiments, as "
             "<code>mlbuild exp show</code> lists them.</p>",
             table(header, _rows(result), numeric, css="experiments")]
    metric = _metric(result, query)
    if metric is None or not result.params:
        parts.append(note("Nothing to plot yet: run a sweep, e.g. "
                          "'mlbuild exp run model.learning_rate=0.05,0.1,0.2'."))
        return "".join(parts)
    parts += ["<h2>Plots</h2>", _choices(result, metric), '<div class="charts">',
              *(plot(result, metric, p) for p in result.params[:MAX_PLOTS]), "</div>"]
    return "".join(parts)


PAGE = Page("/experiments", "Experiments", render)
