"""dvc.lock in DVC's schema 2.0: reading, building stage entries, atomic writing."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.yamlio import dump_yaml, sync_written, write_atomic
from mlbuild.errors import ConfigError, MlbuildError
from mlbuild.pipeline.model import DEFAULT_PARAMS_FILE, Stage

LOCKFILE = "dvc.lock"
SCHEMA = "2.0"
# A build of many quick stages would otherwise spend its time rewriting dvc.lock. Completed
# stages are in the cache and run-cache at once, so a crash in between costs only a restore.
FLUSH_INTERVAL = 1.0


def path_entry(def_path: str, info: HashInfo) -> dict[str, Any]:
    """One deps/outs item as DVC writes it."""
    return {"path": def_path, "hash": "md5", **info.to_lock()}


def params_entry(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Params grouped by file: params.yaml first, then the others sorted; keys sorted."""
    order = sorted(values, key=lambda f: (f != DEFAULT_PARAMS_FILE, f))
    return {f: {k: values[f][k] for k in sorted(values[f])} for f in order}


def stage_entry(
    stage: Stage,
    deps: dict[str, HashInfo],
    params: dict[str, dict[str, Any]],
    outs: dict[str, HashInfo],
) -> dict[str, Any]:
    """The lock entry for a built stage, keyed by def_path, sorted as DVC sorts."""
    entry: dict[str, Any] = {"cmd": stage.cmd_raw}
    if deps:
        entry["deps"] = [path_entry(p, deps[p]) for p in sorted(deps)]
    if params:
        entry["params"] = params_entry(params)
    if outs:
        entry["outs"] = [path_entry(p, outs[p]) for p in sorted(outs)]
    return entry


class LockFile:
    """dvc.lock, loaded once; entries updated one stage at a time, each write atomic."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCKFILE
        self._mutex = threading.Lock()
        self._dirty = False
        self._written = 0.0
        self._timer: threading.Timer | None = None
        self.stages: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        from mlbuild.dvcfmt.dvcyaml import state_dir
        from mlbuild.dvcfmt.memo import load_yaml_memo

        data = load_yaml_memo(self.path, LOCKFILE, state_dir(self.path.parent) / "parsed",
                              check=lambda d: check_lock(d, self.path)) or {}
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise ConfigError(f"{LOCKFILE}: not a DVC lock file (expected 'schema' and 'stages')")
        if data.get("schema") != SCHEMA:
            raise ConfigError(
                f"{LOCKFILE}: unsupported schema {data.get('schema')!r}; expected '{SCHEMA}' "
                "(run 'dvc repro' once with DVC 2+ to upgrade it)"
            )
        return dict(data.get("stages") or {})

    def get(self, name: str) -> dict[str, Any] | None:
        """The recorded entry for a stage."""
        return self.stages.get(name)

    def update(self, name: str, entry: dict[str, Any]) -> None:
        """Record one stage's entry; dvc.lock is rewritten (atomically) at most once per
        FLUSH_INTERVAL while a build runs, and always by flush() when it ends."""
        with self._mutex:
            self.stages[name] = entry
            self._dirty = True
            if time.monotonic() - self._written >= FLUSH_INTERVAL:
                self._write()
            elif self._timer is None:  # held back: written within FLUSH_INTERVAL regardless
                self._timer = threading.Timer(FLUSH_INTERVAL, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def _flush_later(self) -> None:
        """The timer's flush: a failure (a full disk) is left for the final flush to report,
        since this thread has no one to tell."""
        with contextlib.suppress(MlbuildError, OSError):
            self.flush()

    def flush(self) -> None:
        """Write pending entries."""
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._dirty:
                self._write()

    def _write(self) -> None:
        from mlbuild.dvcfmt.dvcyaml import state_dir
        from mlbuild.dvcfmt.memo import remember_yaml

        data = {"schema": SCHEMA, "stages": self.stages}
        text = dump_yaml(data)
        sync_written()  # the .gitignore entries of the outputs recorded here, first
        write_atomic(self.path, text, "dvc.lock")
        # the next no-op then loads JSON instead of importing PyYAML to parse what we wrote
        remember_yaml(self.path, LOCKFILE, state_dir(self.path.parent) / "parsed", data, text)
        self._dirty = False
        self._written = time.monotonic()


_ITEM_TYPES = (("path", str), ("md5", str), ("hash", str), ("size", int), ("nfiles", int))


def _item_problem(item: Any) -> tuple[list[Any], str] | None:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        return [], "expected a mapping with a 'path'"
    for key, kind_type in _ITEM_TYPES:
        value = item.get(key)
        if value is not None and (not isinstance(value, kind_type) or isinstance(value, bool)):
            return [key], f"expected {kind_type.__name__}, got {value!r}"
    return None


def _entry_problem(entry: Any) -> tuple[list[Any], str] | None:
    """Where and why a stage's lock entry is not what DVC writes (key path, expectation)."""
    if not isinstance(entry, dict):
        return [], "expected a mapping"
    if not isinstance(entry.get("cmd"), str | list):
        return ["cmd"], "expected a command or a list of them"
    if not isinstance(entry.get("params", {}), dict):
        return ["params"], "expected a mapping of params files"
    for kind in ("deps", "outs"):
        items = entry.get(kind, [])
        if not isinstance(items, list):
            return [kind], "expected a list"
        for idx, item in enumerate(items):
            problem = _item_problem(item)
            if problem is not None:
                return [kind, idx, *problem[0]], problem[1]
    return None


def check_lock(data: Any, path: Path) -> None:
    """Refuse a dvc.lock whose entries do not have the types DVC writes, naming the line."""
    stages = data.get("stages") if isinstance(data, dict) else None
    for name, entry in (stages or {}).items() if isinstance(stages, dict) else ():
        problem = _entry_problem(entry)
        if problem is None:
            continue
        from mlbuild.dvcfmt.yamlio import locate

        keys, why = problem
        where = locate(path.read_text(encoding="utf-8"), ["stages", name, *keys])
        dotted = ".".join(str(k) for k in ["stages", name, *keys])
        raise ConfigError(f"{LOCKFILE}{where}: {dotted}: {why}; restore dvc.lock from git or "
                          "delete that stage's entry to rebuild it")


def recorded(entries: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """A lock deps/outs list indexed by path."""
    return {str(item.get("path")): item for item in entries or [] if isinstance(item, dict)}
