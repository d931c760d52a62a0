"""`mlbuild lineage`: the whole upstream chain of a path, a stage or a model version at one
revision, stage by stage: command, code with hashes, params, environment, input data with the
`.dvc` pointer and the commit that brought each in, and whether verify passed there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.errors import UsageError, did_you_mean
from mlbuild.files.layout import ENV_FILE
from mlbuild.history import notes as shared
from mlbuild.lineage import gitfacts
from mlbuild.registry.evidence import artifact_path, lock_at, upstream_stages
from mlbuild.registry.state import Registry


@dataclass(frozen=True)
class Target:
    """What the user asked about, resolved to a revision and a stage."""

    text: str
    commit: str
    stage: str
    path: str | None  # None: a whole stage
    model: str | None = None
    version: str | None = None


def _model(root: Path, text: str) -> tuple[str, str, str]:
    """NAME@VERSION or NAME#STAGE -> (name, version, commit)."""
    registry = Registry.read(root)
    name, sep, rest = text.partition("@") if "@" in text else text.partition("#")
    versions = registry.versions(name)
    if not versions:
        known = ", ".join(registry.names()) or "none"
        raise UsageError(f"unknown model '{name}'{did_you_mean(name, registry.names())}: no "
                         f"registered version (models in the registry: {known})")
    version = rest if sep == "@" else registry.holder(name, rest)
    if version is None:
        raise UsageError(f"model '{name}': no version holds stage '{rest}'")
    if not version.startswith("v"):
        version = f"v{version}"
    if version not in versions:
        raise UsageError(f"model '{name}' has no version {version}"
                         f"{did_you_mean(version, versions)}")
    return name, version, versions[version].commit


def _owner(lock: dict[str, LockEntry], path: str) -> str | None:
    for stage, entry in lock.items():
        for out in entry.outs:
            if path == out or path.startswith(out.rstrip("/") + "/"):
                return stage
    return None


def resolve(root: Path, text: str, rev: str | None) -> Target:
    """A path, a stage or a model version, at *rev* (a model version: its own commit)."""
    if ("@" in text or "#" in text) and not (root / text).exists():
        name, version, commit = _model(root, text)
        path = artifact_path(root, name, commit)
        stage = _owner(lock_at(root, commit), path)
        if stage is None:
            raise UsageError(f"model '{name}' {version}: dvc.lock at {commit[:12]} records "
                             f"no output '{path}'")
        return Target(text, commit, stage, path, name, version)
    commit = gitfacts.resolve(root, rev or "HEAD")
    lock = lock_at(root, commit)
    rel = text.rstrip("/")
    if rel in lock:
        return Target(text, commit, rel, None)
    stage = _owner(lock, rel)
    if stage is None:
        if _pointer(_pointers(root, commit, gitfacts.tracked(root, commit)), rel):
            return Target(text, commit, "", rel)  # raw data: where it came from is its .dvc
        known = sorted(lock)
        raise UsageError(f"unknown target '{text}'{did_you_mean(text, known)}: at "
                         f"{commit[:12]} it is neither a stage, an output in dvc.lock nor "
                         f"data a .dvc file tracks (stages: {', '.join(known) or 'none'})")
    return Target(text, commit, stage, rel)


def _pointers(root: Path, commit: str, files: set[str]) -> dict[str, str]:
    """Tracked path -> the .dvc file that tracks it, at the commit (a .dvc file names its
    outputs relative to its own folder)."""
    dvcfiles = sorted(f for f in files if f.endswith(".dvc"))
    if not dvcfiles:
        return {}
    found: dict[str, str] = {}
    texts = gitfacts.read_blobs(root, [f"{commit}:{f}" for f in dvcfiles])
    for pointer in dvcfiles:
        folder = pointer.rpartition("/")[0]
        for out in re.findall(r"^\s*-?\s*path: (.+)$", texts.get(f"{commit}:{pointer}", ""), re.M):
            found[f"{folder}/{out.strip()}" if folder else out.strip()] = pointer
    return found


def _pointer(pointers: dict[str, str], path: str) -> str | None:
    """The .dvc file that tracks *path* or a folder holding it."""
    for out, pointer in pointers.items():
        if path == out or path.startswith(out.rstrip("/") + "/"):
            return pointer
    return None


def _change(root: Path, commit: str, path: str) -> dict[str, Any] | None:
    found = gitfacts.last_change(root, commit, path)
    return None if found is None else {"commit": found.sha, "author": found.author,
                                       "time": found.time, "subject": found.subject}


def _stage(root: Path, commit: str, name: str, lock: dict[str, LockEntry],
           files: set[str], pointers: dict[str, str]) -> dict[str, Any]:
    entry = lock[name]
    owners = {out: stage for stage, e in lock.items() for out in e.outs}
    code, inputs = [], []
    for path, info in entry.deps.items():
        md5 = info.md5 if info else None
        producer = next((s for o, s in owners.items()
                         if path == o or path.startswith(o + "/")), None)
        if producer is None and path in files:
            code.append({"path": path, "md5": md5, "changed": _change(root, commit, path)})
            continue
        pointer = None if producer else _pointer(pointers, path)
        inputs.append({"path": path, "md5": md5, "stage": producer, "pointer": pointer,
                       "introduced": _change(root, commit, pointer) if pointer else None})
    return {"stage": name, "cmd": entry.cmd, "code": code, "inputs": inputs,
            "params": {f: v for f, v in entry.params.items() if f != ENV_FILE},
            "environment": _environment(entry.params.get(ENV_FILE, {}), name),
            "outputs": [{"path": p, "md5": i.md5 if i else None}
                        for p, i in entry.outs.items()]}


def _environment(recorded: dict[str, Any], stage: str) -> dict[str, Any]:
    """The environment record's keys for one stage: interpreter, platform, packages."""
    env = {k: v for k, v in recorded.items() if not k.startswith("stages.")}
    mine = recorded.get(f"stages.{stage}")
    if isinstance(mine, dict):
        env.update(mine)
    return env


def _verified_here(root: Path, commit: str) -> dict[str, Any] | None:
    """This machine's run history, for a verify run before findings were shared."""
    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(root)
    try:
        run = index.latest("verify", commit, "ok") or index.latest("verify", commit, "failed")
    finally:
        index.close()
    if run is None or run.dirty:
        return None
    return {"passed": run.status == "ok", "time": int(run.ended), "who": run.user,
            "targets": run.args}


def _verified(root: Path, commit: str) -> dict[str, Any] | None:
    found = [n for n in shared.read(root) if n.kind == "verify" and n.commit == commit]
    if not found:
        return _verified_here(root, commit)
    last = found[-1]
    return {"passed": bool(last.doc.get("ok")), "time": last.time, "who": last.who,
            "targets": last.doc.get("targets") or []}


def lineage(root: Path, text: str, rev: str | None) -> dict[str, Any]:
    """The lineage document (what --json prints)."""
    target = resolve(root, text, rev)
    lock = lock_at(root, target.commit)
    files = gitfacts.tracked(root, target.commit)
    pointers = _pointers(root, target.commit, files)
    wanted = set(upstream_stages(lock, target.stage)) if target.stage else set()
    chain = [s for s in lock if s in wanted]  # dvc.lock keeps dvc.yaml's order: sources first
    head = gitfacts.commits(root, "-1", target.commit)[0]
    data = None
    if not target.stage and target.path:  # raw data: its pointer and the commit behind it
        pointer = _pointer(pointers, target.path)
        data = {"path": target.path, "pointer": pointer,
                "introduced": _change(root, target.commit, pointer) if pointer else None}
    return {"data": data, "target": text, "model": target.model, "version": target.version,
            "path": target.path, "stage": target.stage, "revision": target.commit,
            "author": head.author, "time": head.time, "subject": head.subject,
            "verify": _verified(root, target.commit), "shallow": gitfacts.shallow(root),
            "stages": [_stage(root, target.commit, s, lock, files, pointers) for s in chain]}
