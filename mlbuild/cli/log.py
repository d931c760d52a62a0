"""`mlbuild log`: the recent runs from the history store."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Annotated

import typer

QUIET = ("up-to-date", "frozen")


def log(
    count: Annotated[int, typer.Option("-n", "--max-count", min=1,
                                       help="How many runs to show, newest first.")] = 10,
    command: Annotated[str | None, typer.Option(
        "--command", help="Only runs of this command (run, verify, pull, push).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show recent runs: who ran what, on which revision, how it ended, and what each stage did."""
    from mlbuild.files.layout import find_root
    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(find_root())
    try:
        runs = index.recent(count, command)
    finally:
        index.close()
    if json_out:
        typer.echo(json.dumps([asdict(r) for r in runs], indent=2))
        return
    if not runs:
        typer.echo("no runs recorded yet")
        return
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started))
        rev = (run.revision or "no commit")[:10] + ("+dirty" if run.dirty else "")
        counts: dict[str, int] = {}
        for stage in run.stages:
            counts[stage.outcome] = counts.get(stage.outcome, 0) + 1
        tally = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no stages"
        typer.echo(f"{run.id[:12]}  {when}  {' '.join([run.command, *run.args])}  "
                   f"{run.status}  {run.ended - run.started:.1f}s  rev {rev}  "
                   f"{run.user}@{run.host}  ({tally})")
        for stage in run.stages:
            if stage.outcome not in QUIET:
                why = "; ".join(stage.reasons[:2]) or stage.message
                typer.echo(f"    {stage.outcome:>10}  {stage.stage}  {stage.seconds:.1f}s"
                           + (f"  ({why})" if why else ""))


def register(app: typer.Typer) -> None:
    """Add the history command."""
    app.command("log")(log)
