"""What one commit says about an artifact, read from git objects (no checkout): its
declaration in dvc.yaml, its hash and the stage that wrote it in dvc.lock, the metrics the
pipeline wrote, and the data contracts of the stages upstream of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.dvcfmt.yamlio import parse_yaml
from mlbuild.errors import UsageError, did_you_mean
from mlbuild.files.layout import DVC_FILE, LOCK_FILE
from mlbuild.gitrepo import GitError, git


@dataclass(frozen=True)
class Checked:
    """A data file a contract names, with the hash it had at the commit."""

    stage: str
    side: str  # input or output
    path: str
    schema: str
    md5: str | None  # None: the commit's dvc.lock does not record it


@dataclass(frozen=True)
class Evidence:
    """An artifact at one commit."""

    name: str
    commit: str  # "": the working tree
    path: str
    stage: str
    info: HashInfo
    metrics: dict[str, float] = field(default_factory=dict)
    contracts: tuple[Checked, ...] = ()


def show(root: Path, commit: str | None, path: str) -> str | None:
    """A file's text at a commit (None: in the working tree), or None where it is not there."""
    if commit is None:
        file = root / path
        return file.read_text(encoding="utf-8", errors="replace") if file.is_file() else None
    try:
        return git(root, "show", f"{commit}:{path}").decode("utf-8", "replace")
    except GitError:
        return None


def _where(commit: str | None) -> str:
    return f"at {commit[:12]}" if commit else "in the working tree"


def _yaml_at(root: Path, commit: str | None, path: str) -> dict[str, Any]:
    text = show(root, commit, path)
    doc = parse_yaml(text, f"{path} {_where(commit)}") if text else None
    return doc if isinstance(doc, dict) else {}


def declared(root: Path, commit: str | None = None) -> dict[str, dict[str, Any]]:
    """dvc.yaml's artifacts at a commit (None: the working tree)."""
    doc = _yaml_at(root, commit, DVC_FILE)
    found = doc.get("artifacts") if isinstance(doc, dict) else None
    return {str(k): v for k, v in found.items() if isinstance(v, dict)} if isinstance(
        found, dict) else {}


def artifact_path(root: Path, name: str, commit: str | None = None) -> str:
    """The path an artifact names; an undeclared one is the user's mistake."""
    artifacts = declared(root, commit)
    if name not in artifacts or not isinstance(artifacts[name].get("path"), str):
        where = f"dvc.yaml at {commit[:12]}" if commit else "dvc.yaml"
        known = ", ".join(sorted(artifacts)) or "none"
        raise UsageError(f"unknown model '{name}'{did_you_mean(name, artifacts)}: {where} "
                         f"declares no such artifact (declared: {known}; declare one under "
                         "'artifacts:' in dvc.yaml or in its stage's stages/<name>.yaml)")
    return str(artifacts[name]["path"])


def sole_artifact(root: Path, what: str) -> str:
    """The only artifact dvc.yaml declares (a command's default model); otherwise the user
    must name one."""
    names = sorted(declared(root))
    if len(names) != 1:
        raise UsageError(f"name the model {what} (declared: {', '.join(names) or 'none'})")
    return names[0]


def _flatten(doc: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        out[prefix.rstrip(".")] = float(doc)
    return out


def metric_files(dvcyaml: dict[str, Any]) -> list[str]:
    """Every metrics file a stage of this dvc.yaml writes (and the top-level list)."""
    files = [m for m in dvcyaml.get("metrics") or [] if isinstance(m, str)]
    for stage in (dvcyaml.get("stages") or {}).values():
        for item in (stage.get("metrics") or []) if isinstance(stage, dict) else []:
            files.append(item if isinstance(item, str) else str(next(iter(item))))
    return list(dict.fromkeys(files))


def _metrics(root: Path, commit: str | None, dvcyaml: dict[str, Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for path in metric_files(dvcyaml):
        text = show(root, commit, path)
        if text is None:
            continue
        try:
            doc = json.loads(text) if path.endswith(".json") else parse_yaml(text, path)
        except ValueError:
            continue
        found.update(_flatten(doc))
    return found


def lock_at(root: Path, commit: str | None) -> dict[str, LockEntry]:
    """dvc.lock's stages at a commit (None: the working tree)."""
    stages = _yaml_at(root, commit, LOCK_FILE).get("stages") or {}
    return {str(k): LockEntry.parse(v) for k, v in stages.items() if isinstance(v, dict)}


def upstream_stages(lock: dict[str, LockEntry], stage: str) -> list[str]:
    """*stage* and every stage whose outputs it (transitively) depends on."""
    owner = {out: name for name, entry in lock.items() for out in entry.outs}
    seen, todo = [stage], [stage]
    while todo:
        for dep in lock[todo.pop()].deps:
            for out, name in owner.items():
                if (dep == out or dep.startswith(out + "/")) and name not in seen:
                    seen.append(name)
                    todo.append(name)
    return seen


def _md5_in(items: dict[str, HashInfo | None], path: str) -> str | None:
    """The md5 of *path* itself, or '<dir md5>/<rel>' when it lies inside a directory."""
    for item, info in items.items():
        if info is None:
            continue
        if item == path:
            return info.md5
        if path.startswith(item + "/") and info.isdir:
            return f"{info.md5}/{path[len(item) + 1:]}"
    return None


def _contracts(dvcyaml: dict[str, Any], lock: dict[str, LockEntry], stages: list[str]
               ) -> tuple[Checked, ...]:
    found = []
    for name in stages:
        meta = ((dvcyaml.get("stages") or {}).get(name) or {}).get("meta") or {}
        contracts = (meta.get("mlbuild") or {}).get("contracts") or {}
        for side, entries in contracts.items():
            items = lock[name].deps if side == "inputs" else lock[name].outs
            for path, ref in (entries or {}).items():
                found.append(Checked(name, side.rstrip("s"), str(path), str(ref),
                                     _md5_in(items, str(path))))
    return tuple(found)


def recorded_md5(root: Path, commit: str | None, path: str) -> str | None:
    """The hash dvc.lock at *commit* records for *path* (a dependency or an output of any
    stage; '<dir md5>/<rel>' inside a directory), or None."""
    for entry in lock_at(root, commit).values():
        found = _md5_in(entry.deps, path) or _md5_in(entry.outs, path)
        if found:
            return found
    return None


def gather(root: Path, name: str, commit: str | None) -> Evidence:
    """The artifact *name* at *commit* (None: in the working tree); one its dvc.lock does not
    record is refused."""
    path = artifact_path(root, name, commit)
    lock = lock_at(root, commit)
    found = [(stage, entry.outs[path]) for stage, entry in lock.items()
             if entry.outs.get(path) is not None]
    if not found:
        raise UsageError(f"model '{name}': dvc.lock {_where(commit)} records no output "
                         f"'{path}'; build it with 'mlbuild run' and commit dvc.lock")
    stage, info = found[0]
    assert info is not None
    dvcyaml = _yaml_at(root, commit, DVC_FILE)
    return Evidence(name, commit or "", path, stage, info, _metrics(root, commit, dvcyaml),
                    _contracts(dvcyaml, lock, upstream_stages(lock, stage)))
