"""`mlbuild audit NAME`: the model's life as one report: every version with a lineage summary,
every gate result, promotion, override with its reason, rollback and monitoring finding, in
order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError, did_you_mean
from mlbuild.lineage import gitfacts
from mlbuild.lineage.events import Event, Facts
from mlbuild.lineage.render import when
from mlbuild.lineage.trace import lineage
from mlbuild.registry.evidence import declared


def _summary(root: Path, name: str, version: str) -> dict[str, Any]:
    """A version's lineage in brief: the data it was built from, its code, verify."""
    doc = lineage(root, f"{name}@{version}", None)
    data = {i["path"]: i["md5"] for s in doc["stages"] for i in s["inputs"] if not i["stage"]}
    code = {c["path"]: c["md5"] for s in doc["stages"] for c in s["code"]}
    return {"version": version, "commit": doc["revision"], "author": doc["author"],
            "stages": [s["stage"] for s in doc["stages"]], "data": data, "code": code,
            "verify": doc["verify"]}


def audit(root: Path, name: str) -> dict[str, Any]:
    """The audit document (what --json prints)."""
    facts = Facts.read(root)
    if name not in facts.models():
        models = sorted(set(facts.models()) | set(declared(root)))
        if name in models:
            raise UsageError(f"model '{name}' has no registered version yet; register one "
                             f"with 'mlbuild model register {name}'")
        raise UsageError(f"unknown model '{name}'{did_you_mean(name, models)} (known: "
                         f"{', '.join(models) or 'none'}; the registry has no version yet)")
    events = facts.events(name)
    versions = [_summary(root, name, v) for v in facts.registry.versions(name)]
    versions.sort(key=lambda v: next(e.time for e in events
                                     if e.kind == "register" and e.version == v["version"]))
    return {"model": name, "versions": versions, "events": [e.to_doc() for e in events],
            "holders": facts.registry.stages(name), "shallow": gitfacts.shallow(root)}


def _register(e: Event, version: str) -> str:
    metrics = ", ".join(f"{k}={v:g}" for k, v in sorted((e.detail.get("metrics") or {}).items()))
    return f"registered {version} at {e.commit[:10]}" + (f" ({metrics})" if metrics else "")


def _promote(e: Event, version: str) -> str:
    gate = "gate passed" if e.gate_passed else "gate not passed"
    forced = f"; OVERRIDDEN: {e.detail.get('reason')}" if e.detail.get("forced") else ""
    replaces = f", replacing {e.detail['replaces']}" if e.detail.get("replaces") else ""
    return f"promoted {version} to {e.stage} ({gate}{forced}){replaces}"


def _rollback(e: Event, version: str) -> str:
    return (f"rolled {e.stage} back to {version} from {e.detail.get('replaces')}: "
            f"{e.detail.get('reason')}")


def _gate(e: Event, version: str) -> str:
    failed = [c for c in (e.detail.get("gate") or {}).get("checks", []) if not c.get("passed")]
    why = "; ".join(str(c.get("detail") or c.get("check")) for c in failed)
    return f"gate refused {version} for {e.stage}: {why}"


def _drift(e: Event, version: str) -> str:
    columns = e.detail.get("drifted_columns") or []
    return (f"monitoring found drift in {version}'s traffic ({len(columns)} columns)"
            + ("; metric degraded" if e.detail.get("degraded") else ""))


def _ct(e: Event, version: str) -> str:
    return f"continuous training ({', '.join(e.detail.get('fired') or [])}): " + str(
        e.detail.get("outcome"))


_LINES = {"register": _register, "promote": _promote, "rollback": _rollback, "gate": _gate,
          "drift": _drift, "ct": _ct}


def describe(event: Event) -> str:
    """One line for an event of the timeline."""
    version = event.version or "?"
    line = _LINES.get(event.kind)
    if line is not None:
        return line(event, version)
    return f"{event.kind} {version}" + (f" {event.stage}" if event.stage else "")


def markdown(doc: dict[str, Any]) -> str:
    """The audit as a Markdown report."""
    lines = [f"# Audit of model `{doc['model']}`", "",
             "Stages now: " + (", ".join(f"{s}={v}" for s, v in doc["holders"].items())
                               or "none"), "", "## Versions", "",
             "| version | commit | author | data | verify |", "| --- | --- | --- | --- | --- |"]
    for v in doc["versions"]:
        data = "<br>".join(f"`{p}` {str(m)[:10]}" for p, m in v["data"].items())
        verify = v["verify"]
        passed = "-" if verify is None else ("passed" if verify["passed"] else "FAILED")
        lines.append(f"| {v['version']} | {v['commit'][:10]} | {v['author']} | {data} | "
                     f"{passed} |")
    lines += ["", "## Timeline", ""]
    lines += [f"- {when(e['time'])} {e['who']}: {describe(Event(**e))}" for e in doc["events"]]
    return "\n".join(lines) + "\n"
