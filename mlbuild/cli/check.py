"""`mlbuild verify`: the CI reproducibility check."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mlbuild.errors import EXIT_FAILED

SYMBOLS = {"identical": "identical", "different": "DIFFERENT", "failed": "FAILED",
           "not-recorded": "not in dvc.lock"}


def verify(
    targets: Annotated[list[str] | None, typer.Argument(
        metavar="[STAGE]...", help="Verify these stages (and their upstream); default all.",
    )] = None,
    twice: Annotated[bool, typer.Option(
        "--twice", help="Build twice in isolation and compare the builds (no lock needed).",
    )] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0, help="Parallel stages.")] = 0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the scratch workspace.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Rebuild from scratch in an isolated workspace and compare every output with dvc.lock."""
    from mlbuild import api
    from mlbuild.files.layout import find_root
    from mlbuild.verify.rebuild import NOT_RECORDED

    root = find_root()
    report = api.verify(root, targets or [], jobs or os.cpu_count() or 1, twice=twice, keep=keep)
    if json_out:
        typer.echo(report.to_json())
    else:
        against = "a second isolated build" if twice else "dvc.lock"
        typer.echo(f"verify: revision {report.revision[:12]} rebuilt in isolation, compared "
                   f"with {against}" + (" (uncommitted changes are not included)"
                                       if report.dirty else ""))
        for v in report.stages:
            line = f"  {SYMBOLS.get(v.status, v.status):>16}  {v.stage}"
            if v.files:
                line += "  (" + ", ".join(v.files) + ")"
            if v.caused_by:
                line += f"  <- caused by '{v.caused_by}'"
            typer.echo(line)
            for hint in v.hints:
                typer.echo(f"{'':>20}likely cause: {hint}")
        if report.root_cause:
            typer.echo(f"first stage that differs: '{report.root_cause}'")
        if report.workspace:
            typer.echo(f"scratch workspace kept at {report.workspace}")
        unchecked = sum(v.status == NOT_RECORDED for v in report.stages)
        typer.echo("verify: FAILED" if not report.ok else "verify: OK, every output reproduced"
                   + (f" ({unchecked} stage(s) not in dvc.lock were not checked)"
                      if unchecked else ""))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the verification command."""
    app.command("verify")(verify)
