"""After a stage ran: which project files it read or wrote without declaring them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.files.layout import stat_key
from mlbuild.pipeline.model import Stage

# Tool metadata and interpreter files are never a stage's inputs or outputs.
IGNORED_DIRS = {".git", ".dvc", ".mlbuild", "__pycache__", ".venv", "venv", ".mypy_cache",
                ".pytest_cache", ".ruff_cache", "node_modules"}
IGNORED_FILES = {"dvc.yaml", "dvc.lock", ".gitignore", ".dvcignore"}

Snapshot = dict[str, tuple[int, ...]]


@dataclass
class Findings:
    """Hermeticity problems of one stage run."""

    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)  # traced: the stage's own processes
    changed: list[str] = field(default_factory=list)  # seen changing while it ran
    network: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # writes the audit hook refused
    restored: list[str] = field(default_factory=list)  # undeclared changes put back
    lost: list[str] = field(default_factory=list)  # undeclared changes not put back
    kept: str | None = None  # where the stage's versions of restored files were moved

    def __bool__(self) -> bool:
        return bool(self.reads or self.writes or self.changed or self.network or self.env
                    or self.refused or self.restored or self.lost)


def _ignored(rel: str, prefixes: tuple[str, ...]) -> bool:
    parts = rel.split("/")
    return (bool(set(parts[:-1]) & IGNORED_DIRS) or parts[-1] in IGNORED_FILES
            or any(p.endswith((".egg-info", ".dist-info")) for p in parts[:-1])
            or rel.startswith(prefixes))


def _covered(rel: str, paths: Iterable[str]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths)


def snapshot(root: Path, skip: list[str]) -> Snapshot:
    """stat identity of every project file outside tool metadata and *skip* (declared outs)."""
    found: Snapshot = {}
    skipped = {p.rstrip("/") for p in skip}  # a set: a covered directory is pruned whole
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS
                       and rel_dir + d not in skipped
                       and not (Path(dirpath, d) / "pyvenv.cfg").exists()]
        for name in filenames:
            rel = rel_dir + name
            if name in IGNORED_FILES or rel in skipped:
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))  # noqa: PTH116, PTH118 - hot loop
            except OSError:
                continue
            found[rel] = stat_key(st)
    return found


def _tool_prefixes(root: Path) -> tuple[str, ...]:
    """The interpreter's and mlbuild's own files, when they live inside the project (the
    stage's own processes may import another copy of mlbuild: each trace names it)."""
    import sys

    import mlbuild

    return (*_inside(root, sys.prefix), *_inside(root, Path(mlbuild.__file__).parent))


def _inside(root: Path, folder: str | Path | None) -> tuple[str, ...]:
    """*folder* as a project-relative prefix ("a/b/"), or nothing when it is outside."""
    if not folder:
        return ()
    try:
        return (Path(folder).resolve().relative_to(root).as_posix() + "/",)
    except ValueError:
        return ()


def analyse(root: Path, stage: Stage, trace_dir: Path, before: Snapshot, after: Snapshot,
            allowed_env: set[str] | None) -> Findings:
    """Compare what the stage did with what it declared."""
    declared_in = [d.path for d in stage.deps] + [p.path for p in stage.params]
    outs = [o.path for o in stage.outs]
    venv = _tool_prefixes(root)
    found = Findings()
    reads: set[str] = set()
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    writes: set[str] = set()
    env_read: set[str] = set()
    for record_file in sorted(trace_dir.glob("*.json")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        reads |= {os.path.relpath(p, root) for p in record.get("reads", [])}
        writes |= {os.path.relpath(p, root) for p in record.get("writes", [])}
        found.network += record.get("network", [])
        venv += _inside(root, record.get("tool"))
        found.refused += record.get("refused", [])
        env_read |= set(record.get("env", []))
    # a file the stage wrote itself is not an input; one it removed again (a temporary file,
    # or one renamed onto a declared output) is not an output
    # only real files count: import machinery also "opens" pseudo paths such as editable
    # installs' '__editable__...__path_hook__' entries of sys.path
    found.reads = sorted(p for p in reads - writes if not _ignored(p, venv)
                         and not _covered(p, declared_in + outs) and (root / p).is_file())
    found.writes = sorted(p for p in writes if not _ignored(p, venv) and not _covered(p, outs)
                          and os.path.lexists(root / p))
    found.changed = sorted(p for p in changed - writes if not _ignored(p, venv)
                           and not _covered(p, outs + declared_in))  # deps: build.py fails it
    if allowed_env is not None:
        from mlbuild.sandbox.environ import TERMINAL_NOISE

        found.env = sorted(k for k in env_read if k in os.environ and k not in allowed_env
                           and k not in TERMINAL_NOISE and not k.startswith(("DVC_", "MLBUILD_")))
    return found
