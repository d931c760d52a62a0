"""The environment a stage is built in: interpreter, platform and the exact versions of the
third-party distributions its code imports (with their installed requirements)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from pathlib import Path

from mlbuild.dvcfmt.yamlio import write_memo


def interpreter() -> dict[str, str]:
    """Interpreter version and platform tag."""
    import platform
    import sysconfig

    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": sysconfig.get_platform(),
    }


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def path_fingerprint() -> str:
    """Changes whenever a distribution is installed, removed or upgraded on sys.path.

    sys.path[0] (the script's directory or the working directory, which changes with every
    build) is left out: only installation directories count.
    """
    digest = hashlib.md5(sys.prefix.encode(), usedforsecurity=False)
    for entry in sys.path[1:]:
        path = Path(entry or ".")
        try:
            digest.update(f"{path}:{path.stat().st_mtime_ns}".encode())
        except OSError:
            continue
    return digest.hexdigest()


def _requirements(dist: str) -> list[str]:
    """Names of the distributions *dist* requires here: requirements whose environment marker
    is false on this interpreter and platform, or that belong to an extra, are left out."""
    import importlib.metadata as md

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        reqs = md.requires(dist) or []
    except md.PackageNotFoundError:
        return []
    names = []
    for text in reqs:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # metadata pip would refuse too: nothing to follow
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


@functools.cache
def _by_module() -> dict[str, list[str]]:
    import importlib.metadata as md

    return dict(md.packages_distributions())


def _resolve(imports: list[str]) -> dict[str, str]:
    import importlib.metadata as md

    by_module = _by_module()
    todo = [d for name in imports for d in by_module.get(name, [])]
    versions: dict[str, str] = {}
    while todo:
        dist = todo.pop()
        key = _canonical(dist)
        if key in versions:
            continue
        try:
            versions[key] = md.version(dist)
        except md.PackageNotFoundError:
            continue
        todo.extend(_requirements(dist))
    return dict(sorted(versions.items()))


class PackageResolver:
    """Distribution versions for sets of imports, memoised on disk per environment."""

    def __init__(self, memo: Path) -> None:
        self.memo = memo
        self.fingerprint = path_fingerprint()
        try:
            data = json.loads(memo.read_text())
        except (OSError, ValueError):
            data = {}
        fresh = data.get("fingerprint") == self.fingerprint
        self.known: dict[str, dict[str, str]] = data.get("by_imports", {}) if fresh else {}
        self.dirty = False

    def packages(self, imports: set[str]) -> dict[str, str]:
        """Distribution -> version for the imported top-level modules."""
        key = ",".join(sorted(imports))
        if key not in self.known:
            self.known[key] = _resolve(sorted(imports))
            self.dirty = True
        return dict(self.known[key])

    def save(self) -> None:
        """Persist the memo if it grew."""
        if self.dirty:
            write_memo(self.memo, json.dumps({"fingerprint": self.fingerprint,
                                              "by_imports": self.known}, sort_keys=True))
