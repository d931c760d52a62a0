"""`mlbuild lineage`, `impact`, `audit` and `kpi`: questions asked of the whole history, as
text, JSON, Markdown or Graphviz."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from mlbuild.errors import UsageError

JSON = typer.Option("--json", help="Print the answer as JSON.")


def _shallow(doc: dict[str, Any]) -> None:
    if doc.get("shallow"):
        typer.echo("mlbuild: warning: this is a shallow clone: history before its boundary is "
                   "missing, so the answer covers only the commits it has ('git fetch "
                   "--unshallow' for all)", err=True)


def lineage(
    target: Annotated[str, typer.Argument(help="A path, a stage, NAME@VERSION or NAME#STAGE.")],
    rev: Annotated[str | None, typer.Option("--rev", help="The revision (default HEAD; a "
                                                          "model version: its own commit).")
                   ] = None,
    json_out: Annotated[bool, JSON] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Print a Graphviz digraph.")] = False,
) -> None:
    """Where it came from: every upstream stage with its code, params, environment and data."""
    from mlbuild.files.layout import find_root
    from mlbuild.lineage import render
    from mlbuild.lineage.trace import lineage as trace

    doc = trace(find_root(), target, rev)
    _shallow(doc)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
    elif dot:
        typer.echo(render.lineage_dot(doc), nl=False)
    else:
        typer.echo("\n".join(render.lineage_text(doc)))


def impact(
    data: Annotated[str, typer.Argument(help="A data path (every hash it ever had) or a hash.")],
    json_out: Annotated[bool, JSON] = False,
) -> None:
    """What it fed: every output, model version and stage assignment built from this data."""
    from mlbuild.files.layout import find_root
    from mlbuild.lineage.impact import impact as reverse
    from mlbuild.lineage.render import when

    doc = reverse(find_root(), data)
    _shallow(doc)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{data}: {len(doc['hashes'])} hash(es): "
               + ", ".join(h[:12] for h in doc["hashes"]))
    for out in doc["outputs"]:
        typer.echo(f"output  {out['stage']}: {out['path']} {out['md5'][:12]} (recorded by "
                   f"{len(out['commits'])} commit(s): "
                   + ", ".join(c[:10] for c in out["commits"][:5]) + ")")
    for version in doc["versions"]:
        typer.echo(f"version {version['model']} {version['version']} at "
                   f"{version['commit'][:10]} ({when(version['time'])})")
    for item in doc["assignments"]:
        typer.echo(f"stage   {item['model']} {item['version']} -> {item['stage']} "
                   f"({item['action']}, {when(item['time'])})"
                   + (" HOLDS IT NOW" if item["holds_now"] else ""))
    if not (doc["outputs"] or doc["versions"]):
        typer.echo("nothing in the history was built from it")


def audit(
    model: Annotated[str, typer.Argument(help="The model's name.")],
    json_out: Annotated[bool, JSON] = False,
    md: Annotated[bool, typer.Option("--md", help="Print a Markdown report.")] = False,
) -> None:
    """The model's life: versions, lineage, gate results, promotions, rollbacks, findings."""
    from mlbuild.files.layout import find_root
    from mlbuild.lineage.audit import audit as report
    from mlbuild.lineage.audit import describe, markdown
    from mlbuild.lineage.events import Event
    from mlbuild.lineage.render import when

    if json_out and md:
        raise UsageError("give --json or --md, not both")
    doc = report(find_root(), model)
    _shallow(doc)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
    elif md:
        typer.echo(markdown(doc), nl=False)
    else:
        for event in doc["events"]:
            typer.echo(f"{when(event['time'])}  {event['who']}: {describe(Event(**event))}")


def _date(text: str | None, option: str, end: bool = False) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} '{text}': expected a date (2026-01-31) or a time "
                         "(2026-01-31T12:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    plain_date = len(text) <= 10
    return moment.timestamp() + (86400 if end and plain_date else 0)  # a date ends at midnight


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 3600:.1f} h" if value < 3 * 86400 else f"{value / 86400:.1f} d"


def _kpi_lines(doc: dict[str, Any]) -> list[str]:
    d = doc["definitions"]
    cpd = doc["commits_per_day"]
    lines = [f"window: {cpd['days']} day(s); stage '{doc['stage']}'", "",
             f"commits per day per author: {cpd['per_day_per_author']:.2f}  "
             f"({cpd['commits']} commits)   [{d['commits_per_day']}]"]
    lines += [f"  {a}: {v['per_day']:.2f} ({v['commits']})" for a, v in cpd["authors"].items()]
    for scope, values in [("overall", doc["overall"]), *doc["models"].items()]:
        rate = values["defect_rate"]
        lines += ["", f"{scope}:",
                  f"  cycle time       median {_hours(values['cycle_time']['median'])}, p90 "
                  f"{_hours(values['cycle_time']['p90'])} (n={values['cycle_time']['count']})"
                  f"   [{d['cycle_time']}]",
                  f"  defect rate      {rate['defects']}/{rate['promotions']}"
                  + (f" = {rate['rate']:.0%}" if rate["rate"] is not None else "")
                  + f"   [{d['defect_rate']}]"]
        for key, label in (("time_to_repair", "time to repair "),
                           ("time_to_respond", "time to respond")):
            v = values[key]
            lines.append(f"  {label}  median {_hours(v['median'])}, p90 {_hours(v['p90'])} "
                         f"(n={v['count']}, open {v['open']})   [{d[key]}]")
    return lines


def kpi(
    since: Annotated[str | None, typer.Option("--since", help="First day (default: the first "
                                                              "commit's).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day (default: now).")
                     ] = None,
    model: Annotated[str | None, typer.Option("--model", help="One model only.")] = None,
    stage: Annotated[str, typer.Option("--stage", help="The production stage.")] = "prod",
    json_out: Annotated[bool, JSON] = False,
) -> None:
    """The MLOps KPIs: commits per day, cycle time, defect rate, time to repair and respond."""
    from mlbuild.files.layout import find_root
    from mlbuild.lineage.kpi import kpis

    start, end = _date(since, "--since"), _date(until, "--until", end=True)
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--until {until} is not after --since {since}")
    doc = kpis(find_root(), start, end, model, stage)
    _shallow(doc)
    typer.echo(json.dumps(doc, indent=2) if json_out else "\n".join(_kpi_lines(doc)))


def register(app: typer.Typer) -> None:
    """Add the lineage, impact, audit and kpi commands."""
    app.command("lineage")(lineage)
    app.command("impact")(impact)
    app.command("audit")(audit)
    app.command("kpi")(kpi)
