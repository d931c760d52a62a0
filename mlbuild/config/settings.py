"""Hermetic settings: project defaults (mlbuild.yaml) merged with each stage's own block."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError, check_keys

PROJECT_FILE = "mlbuild.yaml"
HERMETIC_KEYS = ("env", "network", "threads", "undeclared_reads", "seed")
PROJECT_KEYS = ("hermetic", "strict", "stages", "contracts", "registry",
                "serving", "monitoring", "ct", "kfp")  # registry ... kfp: read by them


@dataclass(frozen=True)
class Hermetic:
    """How one stage is sandboxed."""

    network: bool = False
    threads: int = 1
    seed: int = 42
    undeclared_reads: str = "fail"
    env: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        """The form recorded in .mlbuild/environment.yaml (and so in dvc.lock)."""
        return {"env": list(self.env), "network": self.network, "seed": self.seed,
                "threads": self.threads, "undeclared_reads": self.undeclared_reads}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Hermetic:
        """Inverse of to_doc."""
        return merge(cls(), doc, "environment")


@dataclass(frozen=True)
class ProjectConfig:
    """mlbuild.yaml: hermetic defaults and whether hand-written stages are strict too."""

    hermetic: Hermetic = Hermetic()
    strict: bool = False
    stages: tuple[tuple[str, Hermetic], ...] = ()  # per-stage settings for dvc.yaml stages
    contracts: tuple[tuple[str, str], ...] = ()  # tracked data file -> schema reference

    def stage_settings(self, name: str) -> Hermetic:
        """Settings for a hand-written dvc.yaml stage run hermetically (strict mode)."""
        return dict(self.stages).get(name.split("@", 1)[0], self.hermetic)


def _int(value: Any, where: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}")
    return value


def merge(base: Hermetic, block: Any, where: str) -> Hermetic:
    """Validate a hermetic block and apply it over *base*."""
    if block is None:
        return base
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping")
    check_keys(block, HERMETIC_KEYS, where)
    out = base
    if "network" in block:
        if not isinstance(block["network"], bool):
            raise ConfigError(f"{where}.network: expected true or false")
        out = replace(out, network=block["network"])
    if "threads" in block:
        out = replace(out, threads=_int(block["threads"], f"{where}.threads", minimum=1))
    if "seed" in block:
        out = replace(out, seed=_int(block["seed"], f"{where}.seed", minimum=0))
    if "undeclared_reads" in block:
        if block["undeclared_reads"] not in ("fail", "warn"):
            raise ConfigError(f"{where}.undeclared_reads: expected 'fail' or 'warn'")
        out = replace(out, undeclared_reads=block["undeclared_reads"])
    if "env" in block:
        env = block["env"] or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise ConfigError(f"{where}.env: expected a list of variable names")
        out = replace(out, env=tuple(sorted(set(env))))
    return out


def load_project_config(root: Path) -> ProjectConfig:
    """Read mlbuild.yaml if the project has one."""
    path = root / PROJECT_FILE
    if not path.is_file():
        return ProjectConfig()
    data = load_mapping(path, PROJECT_FILE)
    check_keys(data, PROJECT_KEYS, PROJECT_FILE)
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"{PROJECT_FILE}.strict: expected true or false")
    defaults = merge(Hermetic(), data.get("hermetic"), f"{PROJECT_FILE}.hermetic")
    stages = data.get("stages") or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"{PROJECT_FILE}.stages: expected a mapping of stage names")
    per_stage = tuple(
        (str(name), merge(defaults, block, f"{PROJECT_FILE}.stages.{name}"))
        for name, block in stages.items()
    )
    contracts = data.get("contracts") or {}
    if not isinstance(contracts, dict):
        raise ConfigError(f"{PROJECT_FILE}.contracts: expected a mapping of data file -> schema")
    from mlbuild.contracts import check_ref

    pairs = tuple((str(path), check_ref(ref, f"{PROJECT_FILE}.contracts.{path}"))
                  for path, ref in contracts.items())
    return ProjectConfig(hermetic=defaults, strict=strict, stages=per_stage, contracts=pairs)
