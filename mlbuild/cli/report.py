"""Turning build events into a rich live display for people, or JSON for CI."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mlbuild.cli.plain import label, summary_rows
from mlbuild.events import (
    FAILED,
    FROZEN,
    QUIET,
    RAN,
    RESTORED,
    SKIPPED,
    UP_TO_DATE,
    WOULD_RUN,
    Event,
    Kind,
    StageResult,
)

STYLES: dict[str, str] = {
    RAN: "green", RESTORED: "cyan", UP_TO_DATE: "dim", FAILED: "bold red",
    SKIPPED: "yellow", FROZEN: "blue", WOULD_RUN: "magenta",
}


class LiveReporter:
    """Shows the running stages, each with its ticking time, and a progress bar for the whole
    build, live; and one line per finished stage above them."""

    def __init__(self, console: Console, total: int = 0, finished: int = 0) -> None:
        self.console = console
        self.total = total
        self.finished = finished
        self.running: dict[str, float] = {}
        self._done: set[str] = set()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        # get_renderable: every refresh renders afresh, so the clocks move between events
        self._live = Live(console=console, transient=True, refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=False,
                          get_renderable=self._render)

    def __enter__(self) -> LiveReporter:
        if self.console.is_terminal:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.console.is_terminal:
            self._live.stop()

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        with self._lock:
            running = list(self.running.items())
            finished, total = self.finished, max(self.total, self.finished + len(running))
        for name, since in running:
            table.add_row(Text("running", style="bold yellow"), Text(name, style="bold"),
                          Text(f"{now - since:6.1f}s", style="yellow"))
        table.add_row(ProgressBar(total=total or 1, completed=finished, width=24),
                      Text(f"{finished}/{total} stage(s)"),
                      Text(f"{now - self.started:6.1f}s", style="dim"))
        return table

    def __call__(self, event: Event) -> None:
        with self._lock:  # never held while printing: printing renders the live part too
            if event.kind == Kind.PLAN:
                self.total = event.total
            elif event.kind == Kind.START:
                if event.stage not in self._done:  # announced after a fast stage finished
                    self.running[event.stage] = time.monotonic()
            else:
                self.running.pop(event.stage, None)
                self._done.add(event.stage)
                self.finished += 1
        if event.kind == Kind.DONE and (event.outcome not in QUIET or event.warnings):
            self._line(event)
        if self.console.is_terminal:
            self._live.refresh()

    def _line(self, event: Event) -> None:
        style = STYLES.get(event.outcome, "")
        text = Text()
        text.append(f"{label(event.outcome, event.message):>30} ", style=style)
        text.append(event.stage, style="bold")
        if event.outcome in (RAN, RESTORED, FAILED):
            text.append(f"  {event.seconds:.1f}s", style="dim")
        if event.reasons and event.outcome in (RAN, RESTORED, WOULD_RUN):
            text.append(f"  ({'; '.join(event.reasons[:3])})", style="dim")
        if event.outcome == SKIPPED and event.message:
            text.append(f"  ({event.message})", style="dim")
        self.console.print(text, highlight=False)
        for warning in event.warnings:
            self.console.print(Text(f"  warning: {warning}", style="yellow"), highlight=False)


def summary(results: dict[str, StageResult], elapsed: float) -> Table | Text:
    """The end-of-build summary: a table of the stages that did something, with a count of
    the others; a single line when there was nothing to do."""
    active = {n: r for n, r in results.items() if r.outcome not in QUIET}
    quiet = len(results) - len(active)
    if not active:
        return Text(f"mlbuild: pipeline is up to date ({len(results)} stage(s)), nothing to do "
                    f"({elapsed:.2f}s)", style="green")
    table = summary_table(active, elapsed)
    if quiet:
        table.caption = f"{quiet} other stage(s) up to date"
        table.caption_justify = "left"
    return table


def summary_table(results: dict[str, StageResult], elapsed: float) -> Table:
    """The end-of-build table."""
    table = Table(title=f"mlbuild: {len(results)} stage(s) in {elapsed:.1f}s", title_justify="left")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("why")
    for (stage, result, secs, why), res in zip(summary_rows(results), results.values(),
                                               strict=True):
        table.add_row(stage, Text(result, style=STYLES.get(res.outcome, "")), secs, why)
    return table
