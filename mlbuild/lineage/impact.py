"""`mlbuild impact`: the reverse of lineage, across the whole git history and the registry:
every stage output, model version and stage assignment built (transitively) from a piece of
data, given by path (any hash it ever had) or by hash."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.dvcfmt.yamlio import parse_yaml
from mlbuild.errors import UsageError
from mlbuild.files.layout import LOCK_FILE
from mlbuild.gitrepo import GitError, git
from mlbuild.lineage import gitfacts
from mlbuild.registry.evidence import gather
from mlbuild.registry.state import Registry

_HASH = re.compile(r"[0-9a-f]{6,32}(\.dir)?")


def _versions_of(root: Path, path: str) -> dict[str, list[str]]:
    """blob id -> the commits that wrote it, for every version of *path* in any branch."""
    try:
        out = git(root, "log", "--all", "--format=%x01%H", "--raw", "--no-abbrev",
                  "--no-renames", "--", path).decode("utf-8", "replace")
    except GitError:
        return {}
    blobs: dict[str, list[str]] = {}
    for record in out.split("\x01")[1:]:
        sha, _, raw = record.partition("\n")
        for line in raw.splitlines():
            fields = line.split()
            if len(fields) >= 5 and line.startswith(":") and set(fields[3]) != {"0"}:
                blobs.setdefault(fields[3], []).append(sha.strip())
    return blobs


def _locks(root: Path) -> list[tuple[list[str], dict[str, LockEntry]]]:
    """Every distinct dvc.lock of the history, with the commits that wrote it."""
    blobs = _versions_of(root, LOCK_FILE)
    found = []
    for blob, text in gitfacts.read_blobs(root, list(blobs)).items():
        try:
            doc = parse_yaml(text, LOCK_FILE)
        except ValueError:
            continue
        stages = doc.get("stages") if isinstance(doc, dict) else None
        if isinstance(stages, dict):
            found.append((blobs[blob], {str(k): LockEntry.parse(v) for k, v in stages.items()
                                        if isinstance(v, dict)}))
    return found


def _pointer_hashes(root: Path, path: str) -> set[str]:
    """Every hash a .dvc pointer for *path* ever recorded."""
    found: set[str] = set()
    for text in gitfacts.read_blobs(root, list(_versions_of(root, f"{path}.dvc"))).values():
        found.update(re.findall(r"md5: ([0-9a-f]{32}(?:\.dir)?)", text))
    return found


def _hashes(root: Path, query: str, locks: list[tuple[list[str], dict[str, LockEntry]]]
            ) -> tuple[str, set[str]]:
    """('path' | 'hash', the hashes the query stands for)."""
    rel = query.rstrip("/")
    found = _pointer_hashes(root, rel)
    for _, lock in locks:
        for entry in lock.values():
            for items in (entry.deps, entry.outs):
                info = items.get(rel)
                if info is not None:
                    found.add(info.md5)
    if found:
        return "path", found
    if _HASH.fullmatch(query):
        every = {i.md5 for _, lock in locks for e in lock.values()
                 for i in (*e.deps.values(), *e.outs.values()) if i is not None}
        matched = {h for h in every if h.startswith(query)} | (
            {query} if len(query.split(".", maxsplit=1)[0]) == 32 else set())
        if matched:
            return "hash", matched
    raise UsageError(f"'{query}' is neither a path nor a hash any dvc.lock or .dvc file in "
                     "the history records")


def _tainted(lock: dict[str, LockEntry], hashes: set[str]) -> dict[str, dict[str, str]]:
    """stage -> {output: md5} of every stage built, transitively, from *hashes* (a stage that
    reads a file inside a tainted output folder is tainted too)."""
    hit: dict[str, dict[str, str]] = {}
    dirty, folders = set(hashes), set[str]()
    changed = True
    while changed:
        changed = False
        for name, entry in lock.items():
            if name in hit or not any(
                    (info is not None and info.md5 in dirty)
                    or any(dep == f or dep.startswith(f + "/") for f in folders)
                    for dep, info in entry.deps.items()):
                continue
            hit[name] = entry.out_md5s()
            dirty |= set(hit[name].values())
            folders |= set(hit[name])
            changed = True
    return hit


def impact(root: Path, query: str) -> dict[str, Any]:
    """The impact document (what --json prints)."""
    gitfacts.resolve(root, "HEAD")
    locks = _locks(root)
    kind, hashes = _hashes(root, query, locks)
    outputs: dict[tuple[str, str, str], set[str]] = {}
    built: set[str] = set()
    for commits, lock in locks:
        for stage, outs in _tainted(lock, hashes).items():
            for path, md5 in outs.items():
                outputs.setdefault((stage, path, md5), set()).update(commits)
                built.add(md5)
    versions, assignments = _registry(root, built)
    return {"query": query, "kind": kind, "hashes": sorted(hashes),
            "shallow": gitfacts.shallow(root),
            "outputs": [{"stage": s, "path": p, "md5": m, "commits": sorted(c)}
                        for (s, p, m), c in sorted(outputs.items())],
            "versions": versions, "assignments": assignments}


def _registry(root: Path, built: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    registry = Registry.read(root)
    versions, hit = [], set()
    for name in registry.names():
        for version, event in sorted(registry.versions(name).items()):
            try:
                md5 = gather(root, name, event.commit).info.md5
            except UsageError:
                continue
            if md5 in built:
                hit.add((name, version))
                versions.append({"model": name, "version": version, "commit": event.commit,
                                 "md5": md5, "time": event.time})
    assignments = [{"model": h.model, "version": h.version, "stage": h.stage, "tag": h.tag,
                    "time": h.time, "action": h.action,
                    "holds_now": registry.holder(h.model, h.stage) == h.version}
                   for h in _assignments(registry) if (h.model, h.version) in hit]
    return versions, assignments


class _Assigned:
    """One assignment with its model (HistoryEntry does not carry it)."""

    def __init__(self, model: str, entry: Any) -> None:
        self.model, self.version, self.stage = model, entry.version, entry.stage
        self.tag, self.time, self.action = entry.tag, entry.time, entry.action


def _assignments(registry: Registry) -> list[_Assigned]:
    return [_Assigned(name, h) for name in registry.names() for h in registry.history(name)
            if h.stage and h.action in ("promote", "rollback")]
