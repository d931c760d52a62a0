"""Typed pipeline model loaded from a (resolved) dvc.yaml, validated on construction."""

from __future__ import annotations

import posixpath
import string
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlbuild.contracts import Contract, Side, check_ref
from mlbuild.errors import ConfigError, check_keys
from mlbuild.files.layout import PARAMS_FILE

STAGE_KEYS = (
    "cmd", "wdir", "deps", "params", "outs", "metrics", "plots", "frozen",
    "always_changed", "meta", "desc",
)
OUT_OPTIONS = ("cache", "persist", "remote", "push", "desc", "type", "labels", "meta",
               "checkpoint", "x", "y", "template", "title", "x_label", "y_label", "header")
WARNINGS_KEY = "mlbuild:warnings"  # resolution's warnings, kept beside the resolved stages
TOP_KEYS = ("stages", "vars", "artifacts", "metrics", "plots", "params", "datasets")
# DVC's stage-name rule (dvc.stage.INVALID_STAGENAME_CHARS, enforced by `dvc stage add`):
# no punctuation but '-' and '_'. '@' joins foreach members to their key, ':' separates
# 'dvc.yaml:stage' targets and '/' or '\\' would read as a path, so such a name cannot be
# addressed. Copied rather than imported: reading a pipeline must not import DVC.
INVALID_NAME_CHARS = frozenset(string.punctuation) - {"_", "-"}
NAME_RULE = ("stage names may not contain punctuation other than '-' and '_' (DVC's rule: "
             "'@' joins foreach members, ':' separates dvc.yaml:stage targets, '/' and '\\' "
             "are path separators)")
# `dvc repro` still runs a hand-written dvc.yaml whose names hold other punctuation ('a.b'):
# there only the characters that collide with DVC's own syntax are refused.
SYNTAX_NAME_CHARS = frozenset("@:/\\")
SYNTAX_RULE = ("stage names may not contain '@' (it joins foreach members), ':' (it separates "
               "dvc.yaml:stage targets) or '/' and '\\' (path separators)")


@dataclass(frozen=True)
class Dep:
    """A file or directory dependency."""

    def_path: str  # as written, relative to the stage's wdir
    path: str  # relative to the project root, normalised, posix


@dataclass(frozen=True)
class ParamsDep:
    """Values read from a params file; no keys means the whole file."""

    def_path: str
    path: str
    keys: tuple[str, ...]


class OutKind(StrEnum):
    """The dvc.yaml list an output is declared in (the value is its key)."""

    OUTS = "outs"
    METRICS = "metrics"
    PLOTS = "plots"


@dataclass(frozen=True)
class Out:
    """A declared output (outs, metrics or plots)."""

    def_path: str
    path: str
    cache: bool = True
    persist: bool = False
    kind: OutKind = OutKind.OUTS


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, with every path resolved against the project root."""

    name: str
    cmd: tuple[str, ...]
    cmd_raw: str | list[str]
    wdir: str = "."
    deps: tuple[Dep, ...] = ()
    params: tuple[ParamsDep, ...] = ()
    outs: tuple[Out, ...] = ()
    frozen: bool = False
    always_changed: bool = False
    contracts: tuple[Contract, ...] = ()
    warnings: tuple[str, ...] = ()  # reported when the stage runs

    @property
    def is_callback(self) -> bool:
        """A stage without deps, params and outs always runs, as in DVC."""
        return not self.deps and not self.params and not self.outs


@dataclass(frozen=True)
class Pipeline:
    """All stages of a project, in dvc.yaml order."""

    root: Path
    stages: dict[str, Stage] = field(default_factory=dict)


def check_stage_name(name: str, where: str, hand_written: bool = False) -> None:
    """Refuse a stage name DVC refuses (in a hand-written dvc.yaml: one that collides with
    DVC's syntax, as `dvc repro` runs the rest), stating the rule."""
    chars, rule = (SYNTAX_NAME_CHARS, SYNTAX_RULE) if hand_written else (INVALID_NAME_CHARS,
                                                                          NAME_RULE)
    bad = sorted(chars & set(name))
    if bad or not name.strip():
        shown = f" ({' '.join(repr(c) for c in bad)})" if bad else ""
        raise ConfigError(f"{where}: stage name '{name}' is not allowed{shown}: {rule}")


def normpath(wdir: str, path: str, where: str) -> str:
    """Resolve *path* against *wdir*; refuse paths that leave the project."""
    if posixpath.isabs(path) or (len(path) > 1 and path[1] == ":"):
        raise ConfigError(f"{where}: path '{path}' is absolute; use a path inside the project")
    joined = posixpath.normpath(posixpath.join(wdir, path))
    if joined == ".." or joined.startswith("../"):
        raise ConfigError(f"{where}: path '{path}' is outside the project")
    if joined.split("/", 1)[0] in (".git", ".dvc"):
        raise ConfigError(f"{where}: path '{path}' is inside tool metadata ({joined})")
    return joined


def _out_path(wdir: str, path: str, where: str) -> str:
    joined = normpath(wdir, path, where)
    if joined == ".":
        raise ConfigError(f"{where}: output '{path}' is the project root itself")
    return joined


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _parse_outs(entries: Any, kind: OutKind, wdir: str, where: str) -> list[Out]:
    outs = []
    for item in _as_list(entries, f"{where}.{kind}"):
        opts: dict[str, Any] = {}
        if isinstance(item, dict) and len(item) == 1:
            path, raw = next(iter(item.items()))
            opts = raw or {}
            if not isinstance(opts, dict):
                raise ConfigError(f"{where}.{kind}.{path}: options must be a mapping")
            check_keys(opts, OUT_OPTIONS, f"{where}.{kind}.{path}")
        elif isinstance(item, str):
            path = item
        else:
            raise ConfigError(f"{where}.{kind}: entries must be paths or {{path: options}}")
        outs.append(Out(
            def_path=str(path), path=_out_path(wdir, str(path), f"{where}.{kind}"),
            cache=bool(opts.get("cache", True)), persist=bool(opts.get("persist", False)),
            kind=kind,
        ))
    return outs


def _parse_params(entries: Any, wdir: str, where: str) -> list[ParamsDep]:
    by_file: dict[str, list[str] | None] = {}
    for item in _as_list(entries, f"{where}.params"):
        if isinstance(item, str):
            keys = by_file.setdefault(PARAMS_FILE, [])
            if keys is not None:
                keys.append(item)
        elif isinstance(item, dict):
            for fname, keys in item.items():
                if keys is None or keys == []:
                    by_file[str(fname)] = None
                elif isinstance(keys, list) and by_file.get(str(fname), []) is not None:
                    by_file.setdefault(str(fname), []).extend(str(k) for k in keys)  # type: ignore[union-attr]
                elif not isinstance(keys, list):
                    raise ConfigError(f"{where}.params.{fname}: expected a list of keys")
        else:
            raise ConfigError(f"{where}.params: entries must be keys or {{file: [keys]}}")
    return [
        ParamsDep(def_path=f, path=normpath(wdir, f, f"{where}.params"),
                  keys=tuple(dict.fromkeys(keys or ())))
        for f, keys in by_file.items()
    ]


def _parse_contracts(meta: Any, wdir: str, where: str) -> tuple[Contract, ...]:
    """Contracts live in the stage's meta (meta.mlbuild.contracts), which DVC ignores."""
    if not isinstance(meta, dict) or not isinstance(meta.get("mlbuild"), dict):
        return ()
    spec = meta["mlbuild"].get("contracts") or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}.meta.mlbuild.contracts: expected a mapping")
    found = []
    for side, label in (("inputs", Side.INPUT), ("outputs", Side.OUTPUT)):
        for path, ref in (spec.get(side) or {}).items():
            found.append(Contract(path=normpath(wdir, str(path), f"{where}.contracts"),
                                  schema=check_ref(ref, f"{where}.contracts.{side}.{path}"),
                                  side=label))
    return tuple(found)


def parse_stage(name: str, data: Any, where: str) -> Stage:
    """Build a Stage from its resolved dvc.yaml definition."""
    loc = f"{where}: stage '{name}'"
    if not isinstance(data, dict):
        raise ConfigError(f"{loc}: expected a mapping")
    check_keys(data, STAGE_KEYS, loc)
    cmd = data.get("cmd")
    if isinstance(cmd, str) and cmd.strip():
        # as dvc/stage/run.py does: each line of a multi-line cmd is its own command, run by
        # its own shell (no state carried over), and the first that fails stops the stage
        cmds: tuple[str, ...] = tuple(cmd.splitlines())
    elif isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd):
        cmds = tuple(cmd)
    else:
        raise ConfigError(f"{loc}: 'cmd' is required and must be a command or a list of them")
    wdir = normpath(".", str(data.get("wdir", ".")), loc)
    deps = []
    for dep in _as_list(data.get("deps"), f"{loc}.deps"):
        if not isinstance(dep, str):
            raise ConfigError(f"{loc}.deps: entries must be paths")
        deps.append(Dep(def_path=dep, path=normpath(wdir, dep, f"{loc}.deps")))
    outs = [
        out for kind in OutKind
        for out in _parse_outs(data.get(kind), kind, wdir, loc)
    ]
    return Stage(
        name=name, cmd=cmds, cmd_raw=cmd, wdir=wdir, deps=tuple(deps),
        params=tuple(_parse_params(data.get("params"), wdir, loc)), outs=tuple(outs),
        frozen=bool(data.get("frozen", False)),
        always_changed=bool(data.get("always_changed", False)),
        contracts=_parse_contracts(data.get("meta"), wdir, loc),
    )


def build_pipeline(root: Path, resolved: dict[str, Any], where: str = "dvc.yaml") -> Pipeline:
    """Turn a resolved dvc.yaml mapping into a Pipeline."""
    check_keys(resolved, TOP_KEYS, where)
    stages = resolved.get("stages") or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"{where}: 'stages' must be a mapping of stage names")
    return Pipeline(root=root, stages={
        str(name): parse_stage(str(name), data, where) for name, data in stages.items()
    })
