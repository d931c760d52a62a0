"""dvc.lock in DVC's schema 2.0: reading, building stage entries, atomic writing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.yamlio import dump_yaml, sync_written, write_atomic
from mlbuild.errors import ConfigError, MlbuildError
from mlbuild.files.layout import LOCK_FILE, PARAMS_FILE, state_dir
from mlbuild.pipeline.model import Stage

SCHEMA = "2.0"
# A build of many quick stages would otherwise spend its time rewriting dvc.lock. Completed
# stages are in the cache and run-cache at once, so a crash in between costs only a restore.
FLUSH_INTERVAL = 1.0


def path_entry(def_path: str, info: HashInfo | None) -> dict[str, Any]:
    """One deps/outs item as DVC writes it (only the path when nothing is recorded yet)."""
    return {"path": def_path} if info is None else {"path": def_path, "hash": "md5",
                                                    **info.to_lock()}


def params_entry(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Params grouped by file: params.yaml first, then the others sorted; keys sorted."""
    order = sorted(values, key=lambda f: (f != PARAMS_FILE, f))
    return {f: {k: values[f][k] for k in sorted(values[f])} for f in order}


def _items(raw: Any) -> dict[str, HashInfo | None]:
    """A deps/outs list by path; None where no md5 is recorded (an item that is not a mapping
    is left out, as DVC would never write one)."""
    return {str(item.get("path")): HashInfo.from_entry(item) if item.get("md5") else None
            for item in raw if isinstance(item, dict)} if isinstance(raw, list) else {}


@dataclass(frozen=True, eq=False)
class LockEntry:
    """One stage's entry in dvc.lock (or a run-cache record), parsed once.

    *raw* is the mapping as read or built; it is what gets written, so entries mlbuild did not
    rebuild stay byte-identical in dvc.lock, whatever DVC version wrote them."""

    cmd: str | list[str] | None
    deps: dict[str, HashInfo | None]  # by path as written; None: no md5 recorded
    params: dict[str, dict[str, Any]]  # params file -> key -> value
    outs: dict[str, HashInfo | None]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> LockEntry:
        """The typed view of a lock entry (already checked by check_lock or well_formed)."""
        params = raw.get("params")
        return cls(cmd=raw.get("cmd"), deps=_items(raw.get("deps")),
                   params={str(f): v if isinstance(v, dict) else {}
                           for f, v in params.items()} if isinstance(params, dict) else {},
                   outs=_items(raw.get("outs")), raw=raw)

    def out_md5s(self) -> dict[str, str]:
        """Output path -> md5, for every output recorded with one."""
        return {path: info.md5 for path, info in self.outs.items() if info is not None}


def md5_of(info: HashInfo | None) -> str | None:
    """The recorded md5, if any."""
    return None if info is None else info.md5


def stage_entry(
    stage: Stage,
    deps: dict[str, HashInfo],
    params: dict[str, dict[str, Any]],
    outs: Mapping[str, HashInfo | None],
) -> LockEntry:
    """The lock entry for a built stage, keyed by def_path, sorted as DVC sorts (an output
    given as None is recorded by its path alone: the inputs half of a run-cache key)."""
    entry: dict[str, Any] = {"cmd": stage.cmd_raw}
    if deps:
        entry["deps"] = [path_entry(p, deps[p]) for p in sorted(deps)]
    if params:
        entry["params"] = params_entry(params)
    if outs:
        entry["outs"] = [path_entry(p, outs[p]) for p in sorted(outs)]
    return LockEntry.parse(entry)


class LockFile:
    """dvc.lock, loaded once; entries updated one stage at a time, each write atomic."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._mutex = threading.Lock()
        self._dirty = False
        self._written = 0.0
        self._timer: threading.Timer | None = None
        self._raw: dict[str, Any] = self._read()  # as in the file, order kept
        self._parsed: dict[str, LockEntry] = {}  # parsed on first use (a no-op reads few)
        # name -> (raw, its YAML under 'stages:'): a rewrite emits only the entries that
        # changed (a 100-stage dvc.lock took 40 ms to emit, and a build writes it 2-3 times)
        self._texts: dict[str, tuple[dict[str, Any], str]] = {}

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        from mlbuild.dvcfmt.memo import load_yaml_memo

        data = load_yaml_memo(self.path, LOCK_FILE, state_dir(self.path.parent) / "parsed",
                              check=lambda d: check_lock(d, self.path)) or {}
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise ConfigError(f"{LOCK_FILE}: not a DVC lock file (expected 'schema' and 'stages')")
        if data.get("schema") != SCHEMA:
            raise ConfigError(
                f"{LOCK_FILE}: unsupported schema {data.get('schema')!r}; expected '{SCHEMA}' "
                "(run 'dvc repro' once with DVC 2+ to upgrade it)"
            )
        return dict(data.get("stages") or {})

    def get(self, name: str) -> LockEntry | None:
        """The recorded entry for a stage."""
        entry = self._parsed.get(name)
        if entry is None and name in self._raw:
            entry = self._parsed[name] = LockEntry.parse(self._raw[name])
        return entry

    @property
    def stages(self) -> dict[str, LockEntry]:
        """Every recorded entry, by stage name, in the file's order."""
        return {name: entry for name in list(self._raw) if (entry := self.get(name))}

    def update(self, name: str, entry: LockEntry) -> None:
        """Record one stage's entry; dvc.lock is rewritten (atomically) at most once per
        FLUSH_INTERVAL while a build runs, and always by flush() when it ends."""
        with self._mutex:
            self._raw[name] = entry.raw
            self._parsed[name] = entry
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
        from mlbuild.dvcfmt.memo import remember_yaml

        data = {"schema": SCHEMA, "stages": self._raw}
        text = self._text()
        sync_written()  # the .gitignore entries of the outputs recorded here, first
        write_atomic(self.path, text, LOCK_FILE)
        # the next no-op then loads JSON instead of importing PyYAML to parse what we wrote
        remember_yaml(self.path, LOCK_FILE, state_dir(self.path.parent) / "parsed", data, text)
        self._dirty = False
        self._written = time.monotonic()

    def _text(self) -> str:
        """dvc.lock's text: dump_yaml of the whole file, made of one memoised block per stage
        (a block-style mapping's entries are emitted independently of each other)."""
        if not self._raw:
            return dump_yaml({"schema": SCHEMA, "stages": {}})
        parts = [dump_yaml({"schema": SCHEMA}), "stages:\n"]
        for name, raw in self._raw.items():
            known = self._texts.get(name)
            if known is None or known[0] is not raw:
                block = dump_yaml({"stages": {name: raw}}).split("\n", 1)[1]
                known = self._texts[name] = (raw, block)
            parts.append(known[1])
        return "".join(parts)


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
        raise ConfigError(f"{LOCK_FILE}{where}: {dotted}: {why}; restore dvc.lock from git or "
                          "delete that stage's entry to rebuild it")
