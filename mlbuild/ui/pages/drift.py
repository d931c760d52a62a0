"""The drift page: every check `mlbuild monitor` kept in the run history (verdict, drifted
features, prediction drift, contract, served accuracy), the latest one feature by feature, and
the HTML report a check wrote with --html, served as it is."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.ui.layout import badge, esc, note, number, table, when
from mlbuild.ui.pages import Page
from mlbuild.ui.pages.runs import recent
from mlbuild.ui.svg import Axis, Series, bars, chart

if TYPE_CHECKING:
    from mlbuild.history.journal import RunRecord

CHECKS = 200  # the monitoring checks listed
SHOWN = 20  # features in the latest check's chart, most drifted first


def _checks(root: Path) -> list[tuple[RunRecord, dict[str, Any]]]:
    """(run, report document) of each recorded check, newest first."""
    found = []
    for run in recent(root, CHECKS, "monitor"):
        doc = run.detail.get("monitor")
        if isinstance(doc, dict):
            found.append((run, doc))
    return found


def html_report(root: Path, run: RunRecord) -> Path | None:
    """The --html page a check wrote, if it is still there, inside the project."""
    args = run.args
    named = [args[n + 1] for n, a in enumerate(args[:-1]) if a == "--html"]
    named += [a.split("=", 1)[1] for a in args if a.startswith("--html=")]
    for name in named:
        path = (root / name).resolve()
        if path.is_file() and path.is_relative_to(root.resolve()):
            return path
    return None


def _verdict(doc: dict[str, Any]) -> str:
    drift = badge("DRIFT", "failed") if doc.get("drifted") else badge("no drift", "ok")
    return drift + (" " + badge("DEGRADED", "warn") if doc.get("degraded") else "")


def _row(root: Path, run: RunRecord, doc: dict[str, Any]) -> list[str]:
    data = doc.get("data_drift") or {}
    pred, contract = doc.get("prediction_drift"), doc.get("contract")
    report = html_report(root, run)
    return [esc(when(run.started)), esc(doc.get("model") or "-"), esc(doc.get("version") or "-"),
            _verdict(doc),
            f"{len(doc.get('drifted_columns', []))} of {len(data.get('columns', []))}"
            f" ({float(data.get('share_drifted', 0.0)):.0%})",
            esc("-" if not pred else ("yes" if pred.get("drifted") else "no")
                + f" ({pred.get('method')} {float(pred.get('score', 0.0)):.4g})"),
            esc("-" if not contract else f"{contract.get('failing')} of {contract.get('rows')}"
                " rows fail"),
            f'<a href="/drift/{esc(run.id)}.html">report</a>' if report else "-"]


def _latest(doc: dict[str, Any]) -> str:
    columns = [c for c in (doc.get("data_drift") or {}).get("columns", [])
               if isinstance(c, dict)]
    columns.sort(key=lambda c: -float(c.get("score", 0.0) / (c.get("threshold") or 1.0)))
    top = columns[:SHOWN]
    ratio = Series("score / threshold", tuple(
        (float(n), float(c["score"]) / float(c.get("threshold") or 1.0))
        for n, c in enumerate(top)))
    rows = [[esc(c["column"]), esc(c.get("method")), number(c.get("score")),
             number(c.get("threshold")), number(c.get("psi")),
             badge("drift", "failed") if c.get("drifted") else badge("ok", "ok")]
            for c in columns if c.get("drifted")]
    return "".join([
        f"<h2>Latest check: {esc(doc.get('model') or 'data')} {esc(doc.get('version') or '')}"
        "</h2>", f"<p>reference: <code>{esc(doc.get('reference'))}</code><br>current: "
        f"<code>{esc(doc.get('current'))}</code></p>",
        bars([str(c["column"]) for c in top], [ratio], Axis("score / threshold (> 1: drift)"),
             f"the {len(top)} most drifted features", "feature"),
        "<h3>Drifted features</h3>",
        table(["feature", "method", "score", "threshold", "PSI", "verdict"], rows,
              [False, False, True, True, True]) if rows else note("none")])


def _over_time(checks: list[tuple[RunRecord, dict[str, Any]]]) -> str:
    by_model: dict[str, list[tuple[float, float]]] = {}
    for run, doc in checks:
        share = float((doc.get("data_drift") or {}).get("share_drifted", 0.0))
        by_model.setdefault(str(doc.get("model") or "data"), []).append((run.started, share))
    series = [Series(m, tuple(p)) for m, p in sorted(by_model.items())]
    return chart(series, Axis("checked (UTC)", "time"), Axis("share of features drifted"),
                 "drift over time")


def render(root: Path, query: Mapping[str, str]) -> str:
    """Every recorded check, newest first, then the latest in detail."""
    checks = _checks(root)
    if not checks:
        return note("No monitoring check recorded yet: 'mlbuild monitor' compares what a "
                    "model is served with its training data and keeps the report here.")
    header = ["checked (UTC)", "model", "version", "verdict", "features drifted",
              "prediction drift", "contract", "HTML report"]
    return "".join([
        f"<p>{len(checks)} monitoring check(s), newest first.</p>",
        table(header, [_row(root, run, doc) for run, doc in checks]),
        _over_time(checks), _latest(checks[0][1])])


def raw(root: Path, name: str) -> tuple[str, str] | None:
    """GET /drift/RUN.html: the HTML report that check wrote."""
    run_id = name.removesuffix(".html")
    for run, _ in _checks(root):
        if run.id == run_id:
            path = html_report(root, run)
            return None if path is None else (path.read_text(encoding="utf-8"), "text/html")
    return None


PAGE = Page("/drift", "Drift", render, raw)
