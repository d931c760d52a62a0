"""The registry's settings in mlbuild.yaml (`registry:`): the stages a version may be promoted
to and each model's promotion gate per stage, typed at the loader."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.config.settings import PROJECT_FILE
from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError, check_keys, did_you_mean

DEFAULT_STAGES = ("dev", "staging", "prod")
REGISTRY_KEYS = ("stages", "models")
GATE_KEYS = ("metrics", "beat_current", "contracts", "verify", "remote")
MARGIN_KEYS = ("min_delta", "relative", "greater_is_better")
OPS = (">=", "<=", "==", ">", "<")
_THRESHOLD = re.compile(r"^\s*(>=|<=|==|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Threshold:
    """`metric OP value`, such as accuracy >= 0.95."""

    metric: str
    op: str
    value: float


@dataclass(frozen=True)
class Margin:
    """Beat the version holding the stage on *metric* by at least *min_delta* (a fraction
    of the current value when *relative*)."""

    metric: str
    min_delta: float = 0.0
    relative: bool = False
    greater_is_better: bool = True


@dataclass(frozen=True)
class Gate:
    """What a version must show to enter one stage."""

    where: str  # its place in mlbuild.yaml, for messages
    thresholds: tuple[Threshold, ...] = ()
    beat: tuple[Margin, ...] = ()
    contracts: bool = True
    verify: bool = False
    remote: bool = True

    def metrics(self) -> list[tuple[str, str]]:
        """(metric, config key) of every metric the gate reads."""
        return ([(t.metric, f"{self.where}.metrics.{t.metric}") for t in self.thresholds]
                + [(m.metric, f"{self.where}.beat_current.{m.metric}") for m in self.beat])


@dataclass(frozen=True)
class RegistryConfig:
    """The configured stages and gates."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    gates: dict[tuple[str, str], Gate] = field(default_factory=dict)  # (model, stage) -> gate

    def check_models(self, known: set[str]) -> None:
        """A gate for a model nobody declared would never apply: refused, with the closest."""
        for model in sorted({m for m, _ in self.gates} - known):
            raise ConfigError(f"{PROJECT_FILE}: registry.models.{model}: no artifact named "
                              f"'{model}' is declared{did_you_mean(model, known)} (declared: "
                              f"{', '.join(sorted(known)) or 'none'})")

    def gate(self, model: str, stage: str) -> Gate:
        """The gate of *stage* for *model* (no gate configured: only the evidence checks)."""
        return self.gates.get((model, stage), Gate(f"{PROJECT_FILE}: registry.models.{model}"
                                                   f".{stage}"))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _threshold(metric: str, value: Any, where: str) -> Threshold:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Threshold(metric, ">=", float(value))
    match = _THRESHOLD.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{where}: expected 'OP NUMBER' with OP one of {', '.join(OPS)} "
                          f"(such as '>= 0.95'), got {value!r}")
    try:
        return Threshold(metric, match[1], float(match[2]))
    except ValueError:
        raise ConfigError(f"{where}: '{match[2]}' is not a number") from None


def _margin(metric: str, value: Any, where: str) -> Margin:
    value = {} if value is None or value is True else value
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(MARGIN_KEYS)}")
    check_keys(value, MARGIN_KEYS, where)
    for key in ("relative", "greater_is_better"):
        if key in value and not isinstance(value[key], bool):
            raise ConfigError(f"{where}.{key}: expected true or false")
    delta = _number(value.get("min_delta", 0.0), f"{where}.min_delta")
    if delta < 0:
        raise ConfigError(f"{where}.min_delta: expected a number >= 0")
    return Margin(metric, delta, value.get("relative", False),
                  value.get("greater_is_better", True))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    return value


def _gate(block: Any, where: str) -> Gate:
    block = _mapping(block, where)
    check_keys(block, GATE_KEYS, where)
    for key in ("contracts", "verify", "remote"):
        if key in block and not isinstance(block[key], bool):
            raise ConfigError(f"{where}.{key}: expected true or false")
    metrics = _mapping(block.get("metrics"), f"{where}.metrics")
    beat = _mapping(block.get("beat_current"), f"{where}.beat_current")
    return Gate(where, tuple(_threshold(str(k), v, f"{where}.metrics.{k}")
                             for k, v in metrics.items()),
                tuple(_margin(str(k), v, f"{where}.beat_current.{k}") for k, v in beat.items()),
                block.get("contracts", True), block.get("verify", False),
                block.get("remote", True))


def _stages(value: Any, where: str) -> tuple[str, ...]:
    from mlbuild.registry.tags import valid_name

    if value is None:
        return DEFAULT_STAGES
    if not isinstance(value, list) or not all(isinstance(s, str) and valid_name(s)
                                              for s in value):
        raise ConfigError(f"{where}: expected a list of stage names (letters, digits, '-', "
                          "'_'), such as [dev, staging, prod]")
    return tuple(value)


def load(root: Path) -> RegistryConfig:
    """The `registry:` section of mlbuild.yaml (defaults without one)."""
    from mlbuild.registry.tags import valid_name

    path = root / PROJECT_FILE
    data = load_mapping(path, PROJECT_FILE) if path.is_file() else {}
    where = f"{PROJECT_FILE}: registry"
    section = _mapping(data.get("registry"), where)
    check_keys(section, REGISTRY_KEYS, where)
    stages = list(_stages(section.get("stages"), f"{where}.stages"))
    gates: dict[tuple[str, str], Gate] = {}
    for model, per_stage in _mapping(section.get("models"), f"{where}.models").items():
        for stage, block in _mapping(per_stage, f"{where}.models.{model}").items():
            at = f"{where}.models.{model}.{stage}"
            if not valid_name(str(stage)):
                raise ConfigError(f"{at}: invalid stage name (letters, digits, '-', '_'; it "
                                  "must start and end with a letter or a digit)")
            if stage not in stages:
                stages.append(str(stage))  # a gate configures its stage
            gates[str(model), str(stage)] = _gate(block, at)
    return RegistryConfig(tuple(stages), gates)
