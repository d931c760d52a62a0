"""Text, Markdown and Graphviz forms of the lineage, impact and audit documents (strings only:
the CLI prints them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def when(seconds: int | float | None) -> str:
    """A time as ISO 8601 in UTC, to the second."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(md5: str | None) -> str:
    return (md5 or "-")[:12]


def _verify_line(doc: dict[str, Any]) -> str:
    verify = doc.get("verify")
    if verify is None:
        return "verify: not recorded for this revision"
    return (f"verify: {'passed' if verify['passed'] else 'FAILED'} ({when(verify['time'])}, "
            f"{verify['who']})")


def lineage_text(doc: dict[str, Any]) -> list[str]:
    """The lineage as lines, sources first."""
    what = f"{doc['model']} {doc['version']}" if doc.get("model") else doc["target"]
    lines = [f"{what} at {doc['revision'][:12]} ({doc['author']}, {when(doc['time'])}: "
             f"{doc['subject']})", _verify_line(doc)]
    if doc.get("shallow"):
        lines.append("note: a shallow clone: commits before its boundary are not known")
    if doc.get("data"):
        lines.append(f"data {doc['data']['path']} " + _origin(doc["data"]))
    for stage in doc["stages"]:
        lines.append(f"stage {stage['stage']}: {_cmd(stage['cmd'])}")
        for code in stage["code"]:
            changed = code.get("changed") or {}
            lines.append(f"  code   {code['path']} {_short(code['md5'])}"
                         + (f" (last changed {changed['commit'][:10]} by "
                            f"{changed['author']})" if changed else ""))
        for item in stage["inputs"]:
            lines.append(f"  input  {item['path']} {_short(item['md5'])} " + _origin(item))
        for file, values in stage["params"].items():
            lines.append(f"  params {file}: {json.dumps(values, sort_keys=True)}")
        env = stage["environment"]
        if env:
            lines.append(f"  env    {_env(env)}")
        for out in stage["outputs"]:
            lines.append(f"  output {out['path']} {_short(out['md5'])}")
    return lines


def _cmd(cmd: Any) -> str:
    return " && ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _origin(item: dict[str, Any]) -> str:
    if item.get("stage"):
        return f"(from stage {item['stage']})"
    intro = item.get("introduced")
    if item.get("pointer") and intro:
        return (f"(tracked by {item['pointer']}, brought in by {intro['commit'][:10]}, "
                f"{intro['author']}, {when(intro['time'])})")
    return "(not tracked by a .dvc file)"


def _env(env: dict[str, Any]) -> str:
    packages = env.get("packages")
    parts = [f"{env.get('implementation', 'python')} {env['python']}" if env.get("python")
             else "", str(env.get("platform") or ""),
             f"{len(packages)} packages" if isinstance(packages, dict) else ""]
    return ", ".join(p for p in parts if p) or json.dumps(env, sort_keys=True)[:120]


def _dot_id(text: str) -> str:
    return json.dumps(text)


def lineage_dot(doc: dict[str, Any]) -> str:
    """The lineage as a Graphviz digraph: stages as boxes, data and code as notes/ellipses."""
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for stage in doc["stages"]:
        name = f"stage:{stage['stage']}"
        lines.append(f"  {_dot_id(name)} [shape=box, style=bold, label="
                     f"{_dot_id(stage['stage'])}];")
        for code in stage["code"]:
            lines.append(f"  {_dot_id('file:' + code['path'])} [shape=note, label="
                         f"{_dot_id(code['path'] + chr(10) + _short(code['md5']))}];")
            lines.append(f"  {_dot_id('file:' + code['path'])} -> {_dot_id(name)};")
        for item in stage["inputs"]:
            lines.append(f"  {_dot_id('data:' + item['path'])} [shape=ellipse, label="
                         f"{_dot_id(item['path'] + chr(10) + _short(item['md5']))}];")
            lines.append(f"  {_dot_id('data:' + item['path'])} -> {_dot_id(name)};")
        for out in stage["outputs"]:
            lines.append(f"  {_dot_id('data:' + out['path'])} [shape=ellipse, label="
                         f"{_dot_id(out['path'] + chr(10) + _short(out['md5']))}];")
            lines.append(f"  {_dot_id(name)} -> {_dot_id('data:' + out['path'])};")
    lines.append("}")
    return "\n".join(dict.fromkeys(lines)) + "\n"  # a node drawn twice is declared once
