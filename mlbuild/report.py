"""Turning build events into a rich live display for people, or JSON for CI."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
    StageResult,
)

STYLES = {
    RAN: "green", RESTORED: "cyan", UP_TO_DATE: "dim", FAILED: "bold red",
    SKIPPED: "yellow", FROZEN: "blue", WOULD_RUN: "magenta",
}
LABELS = {
    RAN: "built", RESTORED: "restored from run-cache", UP_TO_DATE: "up to date",
    FAILED: "FAILED", SKIPPED: "skipped", FROZEN: "frozen", WOULD_RUN: "would run",
}




class LiveReporter:
    """Shows the running set live and one line per finished stage."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.running: dict[str, float] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live = Live(self._render(), console=console, transient=True,
                          refresh_per_second=8, redirect_stdout=False, redirect_stderr=False)

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
        for name, since in list(self.running.items()):
            table.add_row(Text("running", style="bold yellow"), name, f"{now - since:5.1f}s")
        table.add_row(Text(f"elapsed {now - self.started:.1f}s", style="dim"))
        return table

    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.kind == "start":
                self.running[event.stage] = time.monotonic()
            else:
                self.running.pop(event.stage, None)
                if event.outcome not in QUIET or event.warnings:
                    self._line(event)
            if self.console.is_terminal:
                self._live.update(self._render())

    def _line(self, event: Event) -> None:
        style = STYLES.get(event.outcome, "")
        text = Text()
        text.append(f"{LABELS.get(event.outcome, event.outcome):>24} ", style=style)
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
    for res in results.values():
        why = "; ".join(res.reasons[:3]) if res.reasons else res.message.split("\n")[0]
        table.add_row(res.stage, Text(LABELS.get(res.outcome, res.outcome),
                                      style=STYLES.get(res.outcome, "")),
                      f"{res.seconds:.1f}s" if res.outcome in (RAN, RESTORED, FAILED) else "",
                      why)
    return table
