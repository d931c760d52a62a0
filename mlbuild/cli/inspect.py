"""`mlbuild status`, `mlbuild dag` and `mlbuild compile`: look without building."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from mlbuild.errors import CheckFailedError

if TYPE_CHECKING:
    from mlbuild.engine.recovery import Leftovers

SHOWN_FILES = 20  # changed files listed under a modified directory


def status(
    targets: Annotated[list[str] | None, typer.Argument(metavar="[STAGE]...",
                                                       help="Limit to these stages.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stale stages and why (dependency, param, command or output changes)."""
    from mlbuild import api
    from mlbuild.cli.build import warn_hand_edits
    from mlbuild.files.layout import find_root

    root = find_root()
    warn_hand_edits(root)
    verdicts, data = api.status_report(root, targets or [], data=not targets)
    stale = [v for v in verdicts if v.stale]
    if json_out:
        typer.echo(json.dumps({
            "up_to_date": not (stale or data),
            "stages": [{"stage": v.stage, "stale": v.stale, "frozen": v.frozen,
                        "reasons": v.reasons, "why": v.why,
                        "changed": sorted({str(w["kind"]) for w in v.why})} for v in verdicts],
            "data": [vars(d) for d in data],
        }, indent=2))
        return
    for change in data:  # worded as `dvc status` words it
        fix = {"modified": f"record it with 'mlbuild data add {change.path}'",
               "deleted": "restore it with 'mlbuild pull'"}.get(change.change, "")
        typer.echo(f"{change.dvcfile}:\n    changed outs: {change.change}: {change.path}"
                   + (f" ({fix})" if fix else ""))
        for name in change.files[:SHOWN_FILES]:
            typer.echo(f"        {name}")
        if len(change.files) > SHOWN_FILES:
            typer.echo(f"        ... and {len(change.files) - SHOWN_FILES} more (--json lists "
                       "them all)")
    if not stale:
        typer.echo(f"Pipeline is up to date ({len(verdicts)} stages)."
                   + (" Tracked data changed." if data else ""))
        return
    for v in stale:
        typer.echo(f"{v.stage}:")
        for reason in v.reasons:
            typer.echo(f"    {reason}")
    typer.echo(f"{len(stale)} of {len(verdicts)} stages stale.")


def dag(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the pipeline graph: each stage with the stages it depends on."""
    from mlbuild import api
    from mlbuild.files.layout import find_root

    order, upstream = api.dag(find_root())
    if json_out:
        typer.echo(json.dumps({"stages": [{"stage": n, "upstream": list(upstream[n])}
                                          for n in order]}, indent=2))
        return
    for name in order:
        ups = upstream[name]
        typer.echo(f"{name}" + (f"  <- {', '.join(ups)}" if ups else ""))


def compile_(
    check: Annotated[bool, typer.Option("--check",
                                        help="Fail (exit 1) if dvc.yaml is out of date.")] = False,
) -> None:
    """Regenerate dvc.yaml from stages/*.yaml (and params.yaml from configs/)."""
    from mlbuild.config.compose import sync_params
    from mlbuild.config.declare import sync_dvcyaml
    from mlbuild.files.layout import find_root

    root = find_root()
    if check:
        if sync_dvcyaml(root, check=True).dvcyaml is not None:
            raise CheckFailedError(
                "dvc.yaml is out of date with stages/*.yaml; run 'mlbuild compile' and commit it"
            )
        typer.echo("dvc.yaml is up to date.")
        return
    from mlbuild.engine.workspace import project_lock

    def cleaned(found: Leftovers) -> None:
        typer.echo(f"mlbuild: {found.summary(root)}", err=True)

    with project_lock(root, on_clean=cleaned):  # never rewrite dvc.yaml under a running build
        sync_params(root, [])
        changed = sync_dvcyaml(root).dvcyaml is not None
    typer.echo("dvc.yaml regenerated." if changed else "dvc.yaml is up to date.")


def register(app: typer.Typer) -> None:
    """Add the inspection commands to the app."""
    app.command("status")(status)
    app.command("dag")(dag)
    app.command("compile")(compile_)
