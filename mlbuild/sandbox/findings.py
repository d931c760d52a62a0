"""After a stage ran: which project files it read or wrote without declaring them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.files.layout import DVC_FILE, LOCK_FILE, stat_key
from mlbuild.files.temp import writer
from mlbuild.pipeline.model import Stage

# Tool metadata and interpreter files are never a stage's inputs or outputs.
IGNORED_DIRS = {".git", ".dvc", ".mlbuild", "__pycache__", ".venv", "venv", ".mypy_cache",
                ".pytest_cache", ".ruff_cache", "node_modules"}
IGNORED_FILES = {DVC_FILE, LOCK_FILE, ".gitignore", ".dvcignore"}

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
    written: list[str] = field(default_factory=list)  # every project path the trace wrote
    # True when the trace saw every process of the stage (Python only, no other program
    # started): a change it did not write was someone else's
    traced: bool = False

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


def snapshot(root: Path, skip: list[str], pycache: bool = False) -> Snapshot:
    """stat identity of every project file outside tool metadata and *skip* (declared outs),
    with *pycache* in `__pycache__` directories too. mlbuild's own temporary files (this
    process's pid in the name: a parallel stage's dvc.lock or .gitignore being written) are
    never a stage's doing."""
    found: Snapshot = {}
    skipped = {p.rstrip("/") for p in skip}  # a set: a covered directory is pruned whole
    ignored = IGNORED_DIRS - {"__pycache__"} if pycache else IGNORED_DIRS
    ours = os.getpid()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if d not in ignored
                       and rel_dir + d not in skipped
                       and not (Path(dirpath, d) / "pyvenv.cfg").exists()]
        for name in filenames:
            rel = rel_dir + name
            if name in IGNORED_FILES or rel in skipped or writer(name) == ours:
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))  # noqa: PTH116, PTH118 - hot loop
            except OSError:
                continue
            found[rel] = _identity(st)
    return found


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """stat_key, less the inode change time of a file with several hard links: with
    cache.type hardlink a checked-out file is one inode with its DVC cache object, and any
    workspace linking or unlinking that object (an experiment's variant, a clone on the same
    cache) changes its ctime here. Such a file is read-only (DVC protects cache objects), and
    writing it still moves its mtime."""
    if st.st_nlink > 1:
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    return stat_key(st)


def python_only(cmds: Iterable[str]) -> bool:
    """True when every command is one plain Python invocation: the shell only starts the
    traced interpreter (no redirection, no second command, no expansion)."""
    import shlex

    for cmd in cmds:
        if any(c in cmd for c in ";&|<>`$()\n\\*?~#{}[]") or not cmd.strip():
            return False
        try:
            first = shlex.split(cmd)[0]
        except (ValueError, IndexError):
            return False
        name = Path(first).name
        if not (name == "python" or (name.startswith("python")
                                     and name[6:].replace(".", "").isdigit())):
            return False
    return True


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


def _records(trace_dir: Path) -> list[dict[str, Any]]:
    """Every process's record; an unreadable one is an empty record marked unseen."""
    found = []
    for record_file in sorted(trace_dir.glob("*.json")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            record = {"unseen": ["?"]}  # what that process did is not known
        found.append(record if isinstance(record, dict) else {"unseen": ["?"]})
    return found


def _relative(root: Path, paths: list[str]) -> set[str]:
    """Project-relative forms of absolute paths (a stage writing 10,000 files records 10,000:
    string slicing where os.path.relpath would normalise each one)."""
    prefix = str(root).rstrip(os.sep) + os.sep
    cut = len(prefix)
    return {p[cut:] if p.startswith(prefix) and "/." not in p and "//" not in p
            else os.path.relpath(p, root) for p in paths}


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
    records = _records(trace_dir)
    for record in records:
        reads |= _relative(root, record.get("reads", []))
        writes |= _relative(root, record.get("writes", []))
        found.network += record.get("network", [])
        venv += _inside(root, record.get("tool"))
        found.refused += record.get("refused", [])
        env_read |= set(record.get("env", []))
    found.traced = (bool(records) and python_only(stage.cmd)
                    and not any(r.get("unseen") for r in records))
    found.written = sorted(writes)
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
