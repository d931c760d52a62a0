"""The build's lines and summary as plain text, for output that is not a terminal (CI logs,
pipes): no colours to show and no live display to draw there, so rich is never loaded."""

from __future__ import annotations

import os
import sys
from typing import IO

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

LABELS: dict[str, str] = {
    RAN: "built", RESTORED: "restored", UP_TO_DATE: "up to date", FAILED: "FAILED",
    SKIPPED: "skipped", FROZEN: "frozen", WOULD_RUN: "would run",
}


def label(outcome: str, message: str = "") -> str:
    """How an outcome reads; a restored stage says how it was restored."""
    if outcome == RESTORED and message:
        return message
    return LABELS.get(outcome, outcome)


def is_terminal(stream: IO[str]) -> bool:
    """Whether rich would draw on *stream*: a terminal, or colours forced as rich honours."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def stage_line(event: Event) -> str:
    """One finished stage, as the display prints it (its outcome right-aligned)."""
    text = f"{label(event.outcome, event.message):>30} {event.stage}"
    if event.outcome in (RAN, RESTORED, FAILED):
        text += f"  {event.seconds:.1f}s"
    if event.reasons and event.outcome in (RAN, RESTORED, WOULD_RUN):
        text += f"  ({'; '.join(event.reasons[:3])})"
    if event.outcome == SKIPPED and event.message:
        text += f"  ({event.message})"
    return text


def print_line(event: Event) -> None:
    """Print a finished stage's line and its warnings, when it is worth a line."""
    if event.outcome in QUIET and not event.warnings:
        return
    lines = [stage_line(event), *(f"  warning: {w}" for w in event.warnings)]
    write_out("".join(f"{line}\n" for line in lines))


def write_out(text: str) -> None:
    """Write to standard output now. A reader that went away (`mlbuild run | head -1`) is no
    reason to stop a build: the rest of the output goes to /dev/null, stderr says so once,
    and the build goes on to its own exit code."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        try:
            sys.stderr.write("mlbuild: standard output was closed; the build goes on "
                             "without printing to it\n")
            sys.stderr.flush()
        except BrokenPipeError:  # the same pipe (`2>&1 | head -1`): silent too
            silence_stdout(sys.stderr)


def silence_stdout(stream: IO[str] | None = None) -> None:
    """Point standard output (or *stream*) at /dev/null (what is still buffered is dropped
    there)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, (stream or sys.stdout).fileno())
    os.close(devnull)


def stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone."""
    import select

    poll = select.poll()
    try:
        poll.register(sys.stdout.fileno(), select.POLLOUT)
    except (OSError, ValueError):
        return False
    return any(events & select.POLLERR for _, events in poll.poll(0))


def summary_rows(results: dict[str, StageResult]) -> list[tuple[str, str, str, str]]:
    """The summary's rows (stage, result, time, why) for the stages that did something."""
    rows = []
    for res in results.values():
        why = "; ".join(res.reasons[:3]) if res.reasons else res.message.split("\n")[0]
        secs = f"{res.seconds:.1f}s" if res.outcome in (RAN, RESTORED, FAILED) else ""
        rows.append((res.stage, label(res.outcome, res.message), secs, why))
    return rows


def summary(results: dict[str, StageResult], elapsed: float) -> str:
    """The end-of-build summary as aligned columns (the terminal gets rich's table)."""
    active = {n: r for n, r in results.items() if r.outcome not in QUIET}
    if not active:
        return (f"mlbuild: pipeline is up to date ({len(results)} stage(s)), nothing to do "
                f"({elapsed:.2f}s)\n")
    rows = [("stage", "result", "time", "why"), *summary_rows(active)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"mlbuild: {len(active)} stage(s) in {elapsed:.1f}s"]
    for stage, result, secs, why in rows:
        lines.append(f"  {stage:<{widths[0]}}  {result:<{widths[1]}}  {secs:>{widths[2]}}  "
                     f"{why}".rstrip())
    if len(results) > len(active):
        lines.append(f"{len(results) - len(active)} other stage(s) up to date")
    return "".join(f"{line}\n" for line in lines)
