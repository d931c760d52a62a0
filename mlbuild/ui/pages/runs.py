"""The recent-runs page: what `mlbuild log` shows, from the history store: who ran what, on
which revision, how it ended, what each stage did; and the durations as a chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.ui.layout import badge, esc, note, table, when
from mlbuild.ui.pages import BadQueryError, Page
from mlbuild.ui.svg import Axis, Series, chart

if TYPE_CHECKING:
    from mlbuild.history.journal import RunRecord

QUIET = ("up-to-date", "frozen")  # stage outcomes `mlbuild log` leaves out too
STATUS_KIND = {"ok": "ok", "failed": "failed", "error": "failed", "interrupted": "stale",
               "running": "info"}


def recent(root: Path, count: int, command: str | None = None) -> list[RunRecord]:
    """The newest *count* runs (of *command*), newest first."""
    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(root)
    try:
        return index.recent(count, command)
    finally:
        index.close()


def _count(query: Mapping[str, str]) -> int:
    text = query.get("n", "50")
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise BadQueryError(f"n={text!r}: expected a count of runs, 1 to 10000")
    return int(text)


def _why(reasons: list[str], message: str) -> str:
    why = "; ".join(reasons[:2]) or message
    return f" ({why})" if why else ""


def _stages(run: RunRecord) -> str:
    tally: dict[str, int] = {}
    for stage in run.stages:
        tally[stage.outcome] = tally.get(stage.outcome, 0) + 1
    text = esc(", ".join(f"{n} {k}" for k, n in tally.items()) or "no stages")
    busy = [s for s in run.stages if s.outcome not in QUIET]
    if not busy:
        return text
    lines = "".join(f"<li>{esc(s.outcome)} <b>{esc(s.stage)}</b> {s.seconds:.1f}s"
                    f"{esc(_why(s.reasons, s.message))}</li>" for s in busy)
    return f"<details><summary>{text}</summary><ul>{lines}</ul></details>"


def _row(run: RunRecord) -> list[str]:
    rev = (run.revision or "no commit")[:10] + ("+dirty" if run.dirty else "")
    return [f"<code>{esc(run.id[:12])}</code>", esc(when(run.started)),
            esc(" ".join([run.command, *run.args])), badge(run.status,
                                                           STATUS_KIND.get(run.status, "info")),
            f"{run.ended - run.started:.1f}s", f"<code>{esc(rev)}</code>",
            esc(f"{run.user}@{run.host}"), _stages(run)]


def _durations(runs: list[RunRecord]) -> str:
    by_command: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        if run.ended:
            by_command.setdefault(run.command, []).append((run.started, run.ended - run.started))
    series = [Series(c, tuple(p)) for c, p in sorted(by_command.items())]
    return chart(series, Axis("started (UTC)", "time"), Axis("seconds"), "duration of each run")


def render(root: Path, query: Mapping[str, str]) -> str:
    """The table of recent runs (?n=COUNT, ?command=NAME) and their durations."""
    command = query.get("command") or None
    runs = recent(root, _count(query), command)
    if not runs:
        return note("No runs recorded yet" + (f" of '{command}'" if command else "")
                    + ": 'mlbuild run' records each build here.")
    header = ["run", "started (UTC)", "command", "status", "took", "revision", "who", "stages"]
    return (f"<p>The {len(runs)} most recent run(s){esc(f' of {command}') if command else ''},"
            " newest first, as <code>mlbuild log</code> lists them.</p>"
            + table(header, [_row(r) for r in runs],
                    [False, False, False, False, True]) + _durations(runs))


PAGE = Page("/runs", "Runs", render)
