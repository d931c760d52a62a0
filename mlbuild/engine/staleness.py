"""Staleness, decided as DVC decides it, with a reason for every verdict."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.lockfile import LockEntry, md5_of
from mlbuild.dvcfmt.params import ParamsReader
from mlbuild.files.layout import ENV_FILE
from mlbuild.pipeline.model import Stage
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import Hasher


class Why(StrEnum):
    """The kind of a reason: what changed, so that tools tell "code changed" from "data
    changed" without reading the words."""

    NEW = "new"  # not in dvc.lock
    ALWAYS = "always"  # always_changed
    CMD = "cmd"
    CODE = "code"  # a dependency that is source code (the stage's Python modules)
    DATA = "data"  # any other dependency
    PARAMS = "params"
    ENV = "env"  # the environment record: interpreter, packages, hermetic settings
    OUTS = "outs"  # an output deleted, modified or missing from the cache
    FORCE = "force"
    UPSTREAM = "upstream"  # (dry run) an upstream stage will run


def dep_kind(path: str) -> Why:
    """Code or data: a Python source file is code (import analysis adds a stage's modules as
    plain deps, so this is how dvc.lock's deps are told apart)."""
    return Why.CODE if path.endswith(".py") else Why.DATA


@dataclass(frozen=True)
class Reason:
    """Why a stage must run."""

    kind: Why
    detail: str
    path: str | None = None

    def __str__(self) -> str:
        return self.detail


@dataclass
class Snapshot:
    """Everything hashed while checking a stage, reused when building its lock entry."""

    deps: dict[str, HashInfo]
    params: dict[str, dict[str, Any]]


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _diff(key: str, old: Any, new: Any, path: str) -> list[Reason]:
    """Reasons for a changed value; nested mappings are compared key by key."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Reason] = []
        for sub in dict.fromkeys([*new, *old]):
            name = f"{key}.{sub}"
            if sub not in new:
                out.append(Reason(Why.PARAMS, f"param '{name}' deleted", path))
            elif sub not in old:
                out.append(Reason(Why.PARAMS, f"param '{name}' new: {_short(new[sub])}", path))
            elif old[sub] != new[sub]:
                out += _diff(name, old[sub], new[sub], path)
        return out
    return [Reason(Why.PARAMS, f"param '{key}' changed: {_short(old)} -> {_short(new)}", path)]




def _env_reason(reason: Reason) -> Reason:
    """Say 'environment changed: lightgbm 4.6.0 -> 4.7.0' for the environment file's params."""
    detail = reason.detail.removeprefix("param '")
    key, _, rest = detail.partition("'")
    parts = key.split(".")
    if len(parts) >= 4 and parts[0] == "stages" and parts[2] in ("packages", "hermetic"):
        name = ".".join(parts[3:])
        what = "environment" if parts[2] == "packages" else "hermetic settings"
    elif len(parts) == 3 and parts[0] == "stages":
        name, what = parts[2], "environment"
    else:
        name, what = key, "environment"
    rest = rest.strip().removeprefix("changed:").strip().replace("'", "")
    return Reason(Why.ENV, f"{what} changed: {name} {rest}".rstrip(), reason.path)


def _param_reasons(stage: Stage, lock: LockEntry, current: dict[str, dict[str, Any]]
                   ) -> list[Reason]:
    reasons = []
    old_all = lock.params
    for dep in stage.params:
        old = old_all.get(dep.def_path) or {}
        new = current[dep.def_path]
        keys = list(dep.keys) or list(dict.fromkeys([*new, *old]))
        for key in keys:
            if key not in new:
                reasons.append(Reason(Why.PARAMS, f"param '{key}' deleted", dep.def_path))
            elif key not in old:
                reasons.append(Reason(Why.PARAMS, f"param '{key}' new", dep.def_path))
            elif old[key] != new[key]:
                reasons += _diff(key, old[key], new[key], dep.def_path)
    return [_env_reason(r) if r.path == ENV_FILE else r for r in reasons]


class StatusChecker:
    """Compares stages with dvc.lock, the workspace and the cache."""

    def __init__(self, hasher: Hasher, params: ParamsReader, cache: Cache) -> None:
        self.hasher = hasher
        self.params = params
        self.cache = cache
        self._complete: dict[str, bool] = {}

    def snapshot(self, stage: Stage) -> Snapshot:
        """Current hashes of deps and values of params."""
        deps: dict[str, HashInfo] = {}
        for dep in stage.deps:
            info = self.hasher.path(dep.path)
            if info is not None:
                deps[dep.def_path] = info
        params = {p.def_path: self.params.values(p, stage.name) for p in stage.params}
        return Snapshot(deps=deps, params=params)

    def check(self, stage: Stage, lock: LockEntry | None) -> tuple[list[Reason], Snapshot]:
        """All reasons the stage is stale (empty when up to date)."""
        snap = self.snapshot(stage)
        if stage.frozen:
            # DVC ignores a frozen stage's deps and params but still checks cmd and outputs
            changed = lock is not None and lock.cmd != stage.cmd_raw
            cmd = [Reason(Why.CMD, "command changed")] if changed else []
            return cmd + self.out_reasons(stage, lock), snap
        if stage.always_changed or stage.is_callback:
            return [Reason(Why.ALWAYS, "always changed")], snap
        if lock is None:
            return [Reason(Why.NEW, "new stage: not in dvc.lock")], snap
        reasons: list[Reason] = []
        if lock.cmd != stage.cmd_raw:
            reasons.append(Reason(Why.CMD, "command changed"))
        for dep in stage.deps:
            new = snap.deps.get(dep.def_path)
            change = ("deleted" if new is None else "new" if dep.def_path not in lock.deps
                      else "modified" if md5_of(lock.deps[dep.def_path]) != new.md5 else None)
            if change:
                reasons.append(Reason(dep_kind(dep.path), f"dependency '{dep.path}' {change}",
                                      dep.path))
        reasons += _param_reasons(stage, lock, snap.params)
        reasons += self.out_reasons(stage, lock)
        return reasons, snap

    def _cached(self, info: HashInfo) -> bool:
        """The object is in the cache; for a directory, every file it lists too (as DVC
        checks), remembered per manifest for this process."""
        if not info.isdir:
            return self.cache.has(info)
        known = self._complete.get(info.md5)
        if known is None:
            known = self._complete[info.md5] = self.cache.complete(info)
        return known

    def out_reasons(self, stage: Stage, lock: LockEntry | None) -> list[Reason]:
        """Outputs missing, modified, new or absent from the cache."""
        reasons = []
        old_outs = lock.outs if lock is not None else {}
        for out in stage.outs:
            new = self.hasher.path(out.path)
            if new is None:
                reasons.append(Reason(Why.OUTS, f"output '{out.path}' deleted", out.path))
            elif out.def_path not in old_outs:
                reasons.append(Reason(Why.OUTS, f"output '{out.path}' new", out.path))
            elif md5_of(old_outs[out.def_path]) != new.md5:
                reasons.append(Reason(Why.OUTS, f"output '{out.path}' modified", out.path))
            elif out.cache and not self._cached(new):
                reasons.append(Reason(Why.OUTS, f"output '{out.path}' not in cache", out.path))
        return reasons
