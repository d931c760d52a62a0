"""The pipeline page: the DAG with each stage's status (up to date, or stale and why), from the
same planner `mlbuild status` and `mlbuild dag` use, and the tracked data that changed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.ui.layout import badge, esc, note, table
from mlbuild.ui.pages import Page
from mlbuild.ui.svg import STATUS_COLOURS, Edge, Node, graph

if TYPE_CHECKING:
    from mlbuild.api import StageStatus
    from mlbuild.pipeline.model import Stage


def _state(verdict: StageStatus) -> tuple[str, str]:
    """(css kind, words) of a stage's verdict."""
    if verdict.frozen:
        return "frozen", "frozen"
    if not verdict.stale:
        return "ok", "up to date"
    kinds = sorted({str(w["kind"]) for w in verdict.why})
    return "stale", "stale: " + ", ".join(kinds) if kinds else "stale"


def _node(verdict: StageStatus) -> Node:
    kind, words = _state(verdict)
    tip = "\n".join([verdict.stage, *verdict.reasons]) if verdict.reasons else verdict.stage
    return Node(verdict.stage, verdict.stage, STATUS_COLOURS[kind], words, tip,
                f"#stage-{verdict.stage}")


def _stage_cells(stage: Stage | None) -> list[str]:
    """The stage's command and its outputs, as dvc.yaml (compiled, not written) has them."""
    if stage is None:
        return ["-", "-"]
    cmd = stage.cmd_raw if isinstance(stage.cmd_raw, str) else " && ".join(stage.cmd_raw)
    outs = "<br>".join(f"<code>{esc(o.path)}</code>" for o in stage.outs) or "-"
    return [f"<code>{esc(cmd)}</code>", outs]


def render(root: Path, query: Mapping[str, str]) -> str:
    """The graph, then a table of every stage and its reasons."""
    from mlbuild import api
    from mlbuild.engine.inputs import prepare
    from mlbuild.pipeline.graph import topo_order

    verdicts, data = api.status_report(root, [])
    ws = prepare(root, dry=True)  # as `mlbuild dag` reads it: nothing written
    order, upstream = topo_order(ws.graph), ws.graph.upstream
    by_name = {v.stage: v for v in verdicts}
    nodes = [_node(by_name[n]) for n in order if n in by_name]
    edges = [Edge(up, n) for n in order for up in upstream[n]]
    stale = [v for v in verdicts if v.stale]
    summary = (f"Pipeline is up to date ({len(verdicts)} stages)." if not stale else
               f"{len(stale)} of {len(verdicts)} stages stale.")
    rows = [[f'<span id="stage-{esc(v.stage)}">{esc(v.stage)}</span>',
             badge(*reversed(_state(v))),
             esc(", ".join(upstream.get(v.stage, ())) or "-"),
             "<br>".join(esc(r) for r in v.reasons) or "-",
             *_stage_cells(ws.graph.stages.get(v.stage))] for v in verdicts]
    changed = [[esc(c.dvcfile), esc(c.path), esc(c.change)] for c in data]
    return "".join([
        f"<p>{esc(summary)}</p>", graph(nodes, edges, "pipeline"),
        "<h2>Stages</h2>", table(["stage", "status", "after", "why", "command", "outputs"], rows),
        "<h2>Tracked data</h2>",
        table([".dvc file", "path", "change"], changed) if changed else
        note("Every .dvc-tracked file matches its pointer and is in the cache.")])


PAGE = Page("/", "Pipeline", render)
