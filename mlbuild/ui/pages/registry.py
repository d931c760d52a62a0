"""The registry page: what `mlbuild model list` and `model history` show: every model, its
versions, which version holds each stage, every promotion with its gate report, overrides
and rollbacks (from the GTO tags), and the promotions a gate refused (the shared findings in
git notes, refs/notes/mlbuild)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.ui.layout import badge, esc, note, table, when
from mlbuild.ui.pages import Page

if TYPE_CHECKING:
    from mlbuild.registry.state import HistoryEntry, Registry



def gate_report(gate: dict[str, Any] | None) -> str:
    """A gate's verdict as a badge, its checks folded under it."""
    if not gate:
        return "-"
    verdict = badge("passed", "ok") if gate.get("passed") else badge("FAILED", "failed")
    checks = [c for c in gate.get("checks", []) if isinstance(c, dict)]
    lines = "".join(f"<li>{badge('pass', 'ok') if c.get('passed') else badge('FAIL', 'failed')}"
                    f" <b>{esc(c.get('check', ''))}</b>: {esc(c.get('detail', ''))}</li>"
                    for c in checks)
    return f"<details class='gate'><summary>{verdict}</summary><ul>{lines}</ul></details>"


def _versions(registry: Registry, name: str) -> str:
    held: dict[str, list[str]] = {}
    for stage, version in registry.stages(name).items():
        held.setdefault(version, []).append(stage)
    rows = [[f"<b>{esc(v)}</b>", f"<code>{esc(e.commit[:10])}</code>", esc(when(e.time)),
             esc(e.tagger), " ".join(badge(s, "info") for s in held.get(v, [])) or "-"]
            for v, e in sorted(registry.versions(name).items(), key=lambda i: i[1].order)]
    return table(["version", "commit", "registered (UTC)", "by", "holds"], rows)


def _history_row(e: HistoryEntry) -> list[str]:
    action = e.action + (" " + badge("FORCED", "warn") if e.forced else "")
    return [esc(when(e.time)), action, esc(e.version or "-"), esc(e.stage or "-"), esc(e.who),
            gate_report(e.gate), esc(e.reason or "-"), f"<code>{esc(e.tag)}</code>"]


def _refused(root: Path, name: str) -> str:
    """The promotions a gate refused: the team's shared findings (git notes), not only this
    machine's run history."""
    from mlbuild.history.notes import read

    rows = [[esc(when(n.time)), esc(n.doc.get("version", "-")), esc(n.doc.get("stage", "-")),
             esc(n.who), gate_report(n.doc.get("gate"))]
            for n in read(root) if n.kind == "gate" and n.doc.get("model") == name]
    if not rows:
        return ""
    return ("<h3>Promotions refused by a gate</h3>"
            + table(["when (UTC)", "version", "stage", "who", "gate"], rows))


def _model(root: Path, registry: Registry, name: str) -> str:
    stages = registry.stages(name)
    held = " ".join(f"{badge(s, 'info')} {esc(v)}" for s, v in stages.items()) or "no stage"
    history = registry.history(name)
    return "".join([
        f"<h2 id='model-{esc(name)}'>{esc(name)}</h2>",
        f"<p>latest <b>{esc(registry.latest(name) or '-')}</b> · {held}</p>",
        _versions(registry, name) if registry.versions(name) else
        note(f"No version of '{name}' registered yet: 'mlbuild model register {name}'."),
        "<h3>History</h3>" if history else "",
        table(["when (UTC)", "action", "version", "stage", "by", "gate", "reason", "tag"],
              [_history_row(e) for e in history]) if history else "",
        _refused(root, name)])


def render(root: Path, query: Mapping[str, str]) -> str:
    """Every model declared in dvc.yaml or registered in the tags."""
    from mlbuild.registry.evidence import declared
    from mlbuild.registry.state import Registry

    registry = Registry.read(root)
    names = sorted(set(declared(root)) | set(registry.names()))
    if not names:
        return note("No model declared (dvc.yaml artifacts:) or registered yet.")
    return (f"<p>{len(names)} model(s), as <code>mlbuild model list</code> and "
            "<code>mlbuild model history</code> show them.</p>"
            + "".join(_model(root, registry, n) for n in names))


PAGE = Page("/registry", "Registry", render)
