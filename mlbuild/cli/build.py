"""`mlbuild run`: bring stages up to date."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from mlbuild.errors import EXIT_FAILED


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides contain '=' (or start with + or ~); everything else is a stage."""
    overrides = [a for a in args if "=" in a or a[:1] in "+~"]
    return [a for a in args if a not in overrides], overrides


def _waiting(message: str) -> None:
    sys.stderr.write(f"mlbuild: {message}\n")
    sys.stderr.flush()


def run(
    args: Annotated[list[str] | None, typer.Argument(
        metavar="[STAGE|OVERRIDE]...",
        help="Stages to build (with their upstream) and Hydra overrides like model=logreg.",
    )] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=0, help="Stages to run at once (0, the default: CPU count).",
    )] = 0,
    force: Annotated[bool, typer.Option("--force", "-f",
                                        help="Run the stages even if up to date.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n",
                                          help="Show what would run; change nothing.")] = False,
    keep_going: Annotated[bool, typer.Option("--keep-going", "-k",
                                             help="On failure, still build what does not "
                                             "depend on the failed stage.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    pull: Annotated[bool, typer.Option(
        "--pull", help="Fetch the run-cache and the outputs the plan needs from the DVC remote "
        "instead of rebuilding them.",
    )] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Run hand-written dvc.yaml stages fully hermetic too.",
    )] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait",
                                          help="Fail instead of waiting when another run "
                                          "holds the project.")] = False,
) -> None:
    """Build the pipeline: rerun only stages whose code, data, params or command changed."""
    from rich.console import Console

    from mlbuild import api
    from mlbuild.project import find_root
    from mlbuild.report import LiveReporter, results_json, summary

    targets, overrides = _split_args(args or [])
    request = api.RunRequest(
        targets=targets, overrides=overrides, jobs=jobs or os.cpu_count() or 1, force=force,
        dry_run=dry_run, keep_going=keep_going, wait=not no_wait, strict=strict,
        pull_remote=pull,
    )
    root = find_root()
    console = Console(stderr=json_out, highlight=False)
    start = time.monotonic()
    if json_out:
        results = api.run(root, request, on_wait=_waiting)
        typer.echo(results_json(results, time.monotonic() - start))
    else:
        with LiveReporter(console) as reporter:
            results = api.run(root, request, emit=reporter, on_wait=_waiting)
        console.print(summary(results, time.monotonic() - start))
    for res in api.failed(results):
        sys.stderr.write(f"mlbuild: error: {res.message}\n")
    if api.failed(results):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the build commands to the app."""
    app.command("run")(run)
