"""`mlbuild run`: bring stages up to date."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mlbuild.cli.plain import is_terminal, print_line, write_out
from mlbuild.cli.plain import summary as plain_summary
from mlbuild.errors import EXIT_FAILED
from mlbuild.events import QUIET, Event, Kind, StageResult


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides contain '=' (or start with + or ~); everything else is a stage."""
    overrides = [a for a in args if "=" in a or a[:1] in "+~"]
    return [a for a in args if a not in overrides], overrides


class _Display:
    """The rich live display, started only once a stage does something: a no-op build
    prints one plain line and never loads rich."""

    def __init__(self) -> None:
        self.live: Any = None
        # not a terminal (CI, a pipe): plain lines, and rich (about 60-100 ms) never loaded
        self.plain = not is_terminal(sys.stdout)
        self.total = 0
        self.finished = 0  # stages done before the display started (up to date ones)
        self._lock = threading.Lock()  # stage threads report too, while rich may be loading

    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.kind == Kind.PLAN:
                self.total = event.total
            if self.plain:
                if event.kind == Kind.DONE:
                    print_line(event)
                return
            if self.live is None:
                if event.kind == Kind.PLAN:
                    return
                if event.kind == Kind.DONE and event.outcome in QUIET and not event.warnings:
                    self.finished += 1
                    return
                from rich.console import Console

                from mlbuild.cli.report import LiveReporter

                self.live = LiveReporter(Console(highlight=False, emoji=False), self.total,
                                         self.finished).__enter__()
        self.live(event)

    def close(self) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def summary(self, results: dict[str, StageResult], elapsed: float) -> None:
        if self.plain:
            write_out(plain_summary(results, elapsed))
            return
        if self.live is None and all(r.outcome in QUIET for r in results.values()):
            typer.echo(f"mlbuild: pipeline is up to date ({len(results)} stage(s)), nothing "
                       f"to do ({elapsed:.2f}s)")
            return
        from mlbuild.cli.report import summary

        console = self.live.console if self.live is not None else None
        if console is None:
            from rich.console import Console

            console = Console(highlight=False, emoji=False)  # a stage named :x: stays so
        console.print(summary(results, elapsed))


def warn_hand_edits(root: Path) -> None:
    """Tell the user when params.yaml was edited by hand (shared by run and status)."""
    if (root / "configs").is_dir():
        from mlbuild.config.compose import hand_edit_notice

        notice = hand_edit_notice(root)
        if notice:
            sys.stderr.write(f"mlbuild: warning: {notice}\n")


def waiting(message: str) -> None:
    """Say on stderr what a command is waiting for, or doing besides its main work."""
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
    from mlbuild import api
    from mlbuild.events import results_json
    from mlbuild.files.layout import find_root

    targets, overrides = _split_args(args or [])
    request = api.RunRequest(
        targets=targets, overrides=overrides, jobs=jobs or os.cpu_count() or 1, force=force,
        dry_run=dry_run, keep_going=keep_going, wait=not no_wait, strict=strict,
        pull_remote=pull,
    )
    root = find_root()
    warn_hand_edits(root)
    start = time.monotonic()
    if json_out:
        results = api.run(root, request, on_wait=waiting, on_notice=waiting)
        typer.echo(results_json(results, time.monotonic() - start))
    else:
        display = _Display()
        try:
            results = api.run(root, request, emit=display, on_wait=waiting,
                              on_notice=waiting)
        finally:
            display.close()
        display.summary(results, time.monotonic() - start)
    for res in api.failed(results):
        sys.stderr.write(f"mlbuild: error: {res.message}\n")
    if api.failed(results):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the build commands to the app."""
    app.command("run")(run)
