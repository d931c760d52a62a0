"""The lineage page: where a model version (or an output, a stage, raw data) came from, as a
graph of its upstream stages, the data and code they read and what they wrote, with the
details `mlbuild lineage` prints; a link per registered version to pick another."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.ui.layout import badge, esc, note, table, when
from mlbuild.ui.pages import BadQueryError, Page
from mlbuild.ui.svg import STATUS_COLOURS, Edge, Node, graph


def _short(md5: object) -> str:
    return str(md5 or "-")[:10]


def _made_by(doc: dict[str, Any], path: str) -> str | None:
    """The node of the chain's output that *path* is (or lies inside)."""
    for stage in doc["stages"]:
        for out in stage["outputs"]:
            if path == out["path"] or path.startswith(out["path"].rstrip("/") + "/"):
                return f"data:{out['path']}"
    return None


def _graph(doc: dict[str, Any]) -> str:
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for stage in doc["stages"]:
        name = f"stage:{stage['stage']}"
        nodes[name] = Node(name, stage["stage"], STATUS_COLOURS["ok"], "stage",
                           str(stage["cmd"]), f"#stage-{stage['stage']}")
        for item in stage["inputs"]:
            key = _made_by(doc, item["path"]) or f"data:{item['path']}"
            origin = item.get("pointer") or "output of " + str(item.get("stage"))
            nodes.setdefault(key, Node(key, item["path"], STATUS_COLOURS["data"],
                                       _short(item["md5"]), f"{item['md5']} ({origin})"))
            edges.append(Edge(key, name))
        for out in stage["outputs"]:
            key = f"data:{out['path']}"
            nodes[key] = Node(key, out["path"], STATUS_COLOURS["data"], _short(out["md5"]),
                              str(out["md5"]))
            edges.append(Edge(name, key))
    return graph(list(nodes.values()), list(dict.fromkeys(edges)), "lineage")


def _stage_table(stage: dict[str, Any]) -> str:
    rows = [[badge("code", "info"), f"<code>{esc(c['path'])}</code>", esc(_short(c["md5"])),
             esc((c.get("changed") or {}).get("author", "-"))] for c in stage["code"]]
    for item in stage["inputs"]:
        intro = item.get("introduced") or {}
        origin = (f"stage {item['stage']}" if item.get("stage") else
                  f"{item.get('pointer') or '-'}, {intro.get('author', '-')}, "
                  f"{when(intro['time']) if intro.get('time') else '-'}")
        rows.append([badge("input", "ok"), f"<code>{esc(item['path'])}</code>",
                     esc(_short(item["md5"])), esc(origin)])
    rows += [[badge("output", "frozen"), f"<code>{esc(o['path'])}</code>",
              esc(_short(o["md5"])), ""] for o in stage["outputs"]]
    env = stage.get("environment") or {}
    packages = env.get("packages") or {}
    params = "".join(f"<li><code>{esc(f)}</code>: {esc(v)}</li>"
                     for f, v in stage["params"].items())
    return (f"<h3 id='stage-{esc(stage['stage'])}'>stage {esc(stage['stage'])}</h3>"
            f"<p><code>{esc(stage['cmd'])}</code></p>"
            + table(["kind", "path", "hash", "from / last changed by"], rows)
            + (f"<ul>{params}</ul>" if params else "")
            + f"<p class='muted'>{esc(env.get('implementation', ''))} "
              f"{esc(env.get('python', ''))} {esc(env.get('platform', ''))}, "
              f"{len(packages)} packages</p>")


def _versions(root: Path) -> str:
    from mlbuild.registry.state import Registry

    registry = Registry.read(root)
    links = [f"<a href='/lineage?target={esc(name)}@{esc(v)}'>{esc(name)}@{esc(v)}</a>"
             for name in registry.names() for v in sorted(registry.versions(name))]
    return ("<p>Versions: " + " · ".join(links) + "</p>") if links else note(
        "No model version registered yet: a target can still be a stage or an output path.")


def _default(root: Path) -> str | None:
    from mlbuild.registry.state import Registry

    registry = Registry.read(root)
    for name in registry.names():
        held = registry.stages(name)
        version = held.get("prod") or registry.latest(name)
        if version:
            return f"{name}@{version}"
    return None


def render(root: Path, query: Mapping[str, str]) -> str:
    """The graph and the per-stage details of ?target= (default: the prod version)."""
    from mlbuild.lineage.trace import lineage

    target = query.get("target") or _default(root)
    form = ("<form method='get' action='/lineage'><input name='target' size='40' "
            f"value='{esc(target or '')}' placeholder='model@v0.0.1, model#prod, a path'> "
            "<button>show</button></form>")
    if target is None:
        return form + _versions(root)
    try:
        doc = lineage(root, target, query.get("rev") or None)
    except UsageError as exc:
        raise BadQueryError(str(exc)) from exc
    verify = doc["verify"]
    verdict = (badge("verify: not recorded", "warn") if verify is None else
               badge("verify passed", "ok") if verify["passed"] else
               badge("verify FAILED", "failed"))
    head = (f"<h2>{esc(doc['model'] or '')} {esc(doc['version'] or target)}</h2>"
            f"<p>commit <code>{esc(doc['revision'][:12])}</code> by {esc(doc['author'])}, "
            f"{esc(when(doc['time']))}: {esc(doc['subject'])} {verdict}</p>")
    body = "".join(_stage_table(s) for s in doc["stages"])
    return form + _versions(root) + head + (_graph(doc) if doc["stages"] else "") + body


PAGE = Page("/lineage", "Lineage", render)
