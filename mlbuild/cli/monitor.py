"""`mlbuild monitor`: drift of the served data against the training data, as a terminal table,
JSON, or a self-contained HTML page; each check is kept in the run history."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlbuild.errors import EXIT_FAILED, UsageError

SHOWN = 20  # columns in the terminal table; --json and --html have them all
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90s', '30m', '24h', '7d', '2w' or plain seconds -> seconds."""
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise UsageError(f"--since {text!r}: expected a duration like 30m, 24h or 7d")
    return float(match[1]) * _UNIT[match[2]]


def _table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"drift: {report.current} vs {report.reference}", title_justify="left")
    for name in ("feature", "method", "score", "threshold", "PSI", "verdict"):
        table.add_column(name, justify="left" if name == "feature" else "right")
    columns = sorted(report.data.columns, key=lambda c: not c.drifted)  # stable: schema order
    for col in columns[:SHOWN]:
        table.add_row(col.column, col.method, f"{col.score:.4g}", f"{col.threshold:g}",
                      f"{col.psi:.3g}", "[red]drift[/red]" if col.drifted else "ok")
    console = Console()
    console.print(table)
    if len(columns) > SHOWN:
        console.print(f"... {len(columns) - SHOWN} more columns, none drifted past those shown "
                      "(--json or --html lists them all)")


def _summary(report: Any) -> list[str]:
    data = report.data
    lines = [f"{'DRIFT' if report.drifted else 'no drift'}: {len(report.drifted_columns())} of "
             f"{len(data.columns)} features drifted ({data.share:.0%}; dataset drift at "
             f"{data.threshold_share:.0%})"]
    if report.drifted_columns():
        lines.append("drifted: " + ", ".join(report.drifted_columns()[:10]))
    if report.prediction is not None:
        p = report.prediction
        lines.append(f"prediction drift: {'yes' if p.drifted else 'no'} ({p.method} "
                     f"{p.score:.4g}, threshold {p.threshold:g})")
    if report.contract is not None:
        c = report.contract
        lines.append(f"contract: {c.failing} of {c.rows} current rows fail it"
                     + (f" (first: {c.first_problem})" if c.first_problem else ""))
    if report.performance is not None:
        perf = report.performance
        registered = f"{perf.registered:g}" if perf.registered is not None else "not recorded"
        lines.append(f"{perf.metric} on {perf.rows} labelled served rows: {perf.current:.4g} "
                     f"(registered {registered}){'  DEGRADED' if perf.degraded else ''}")
    versions = report.extra.get("versions")
    if versions:
        for v in versions["versions"]:
            acc = f", accuracy {v['accuracy']:.4g}" if v["accuracy"] is not None else ""
            lines.append(f"version {v['version']} ({v['role']}): {v['rows']} rows{acc}")
        agreement = versions["shadow_agreement"]
        if agreement:
            lines.append(f"shadow agrees with the answer on {agreement['share']:.1%} of "
                         f"{agreement['rows']} rows")
    lines.extend(f"skipped: {why}" for why in report.skipped)
    return lines


def monitor(
    model: Annotated[str | None, typer.Argument(
        help="NAME, NAME#STAGE, NAME@VERSION or a model file (default: the only declared "
             "model, in prod).")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", help="Reference data file (default: the serving version's training "
                            "data, through lineage).")] = None,
    current: Annotated[Path | None, typer.Option(
        "--current", help="Current data file (default: the model's prediction log).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only served rows this recent: 30m, 24h, 7d.")] = None,
    log_dir: Annotated[Path | None, typer.Option(
        "--log-dir", help="The prediction log folder (default: .mlbuild/predictions/NAME).")
    ] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="True answers of served requests (request_id, label, row): the "
                         "serving model's accuracy on them against its registered one.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML report.")] = None,
    fail_on_drift: Annotated[bool, typer.Option(
        "--fail-on-drift", help="Exit 1 on drift, or on a metric below the registered one "
                                "(for CI and cron).")] = False,
) -> None:
    """Compare the data a model is served with the data it was trained on."""
    from mlbuild.files.layout import find_root
    from mlbuild.history.journal import recording
    from mlbuild.monitor.check import Request, check
    from mlbuild.registry.evidence import sole_artifact

    root = find_root()
    window = parse_duration(since) if since else None
    name = model or (None if current and reference else sole_artifact(root, "to monitor"))
    with recording(root, "monitor", sys.argv[2:]) as recorder:
        checked = check(root, Request(name, reference, current, window, log_dir, labels))
        doc = checked.report.to_doc()
        recorder.record.detail["monitor"] = doc
    from mlbuild.monitor.findings import share

    share(root, checked.report)
    if html_out is not None:
        from mlbuild.monitor.html import render

        html_out.write_text(render(checked.report, checked.reference, checked.current),
                            encoding="utf-8")
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
    else:
        _table(checked.report)
        for line in _summary(checked.report):
            typer.echo(line)
        if html_out is not None:
            typer.echo(f"report: {html_out}")
    if fail_on_drift and (checked.report.drifted or checked.report.degraded):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the monitor command."""
    app.command("monitor")(monitor)
