"""`mlbuild ct`: one continuous-training step for CI or cron: retrain, verify, register and
promote when new data, changed code, a due schedule or drift calls for it; nothing otherwise."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from mlbuild.errors import EXIT_FAILED, UsageError


def ct(
    on: Annotated[str | None, typer.Option(
        "--on", help="Triggers that count, comma-separated: data,code,schedule,drift "
                     "(default: mlbuild.yaml ct.on, else all).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="The model (default: mlbuild.yaml ct.model, else the only one).")
    ] = None,
    promote_to: Annotated[str | None, typer.Option(
        "--promote-to", help="The stage a new version is promoted to (default: prod).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Judge the triggers only; build nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")
                        ] = False,
) -> None:
    """Retrain, verify, register and promote when a trigger fires (exit 1 if that failed)."""
    from mlbuild.ct import config
    from mlbuild.ct.loop import step
    from mlbuild.files.layout import find_root
    from mlbuild.history.journal import recording
    from mlbuild.registry.evidence import sole_artifact

    root = find_root()
    settings = config.load(root)
    wanted = (config.triggers([t.strip() for t in on.split(",") if t.strip()], "--on")
              if on is not None else settings.on)
    if not wanted:
        raise UsageError("--on: name at least one trigger (data, code, schedule, drift)")
    name = model or settings.model or sole_artifact(root, "to train")
    stage = promote_to or settings.promote_to
    say = (lambda _text: None) if json_out else typer.echo
    with recording(root, "ct", sys.argv[2:]) as recorder:
        decision = step(root, name, stage, wanted, settings, dry_run, say)
        recorder.record.detail = {"ct": decision.to_doc()}
        if decision.failed:
            recorder.record.status = "failed"
    if json_out:
        typer.echo(json.dumps(decision.to_doc(), indent=2))
    else:
        for trigger in decision.triggers:
            mark = "skipped" if trigger.skipped else ("FIRED" if trigger.fired else "quiet")
            typer.echo(f"  {trigger.name:<9}{mark:<8}{trigger.reason}")
        typer.echo(decision.outcome)
    if decision.failed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the ct command."""
    app.command("ct")(ct)
