"""Continuous-training settings in mlbuild.yaml (`ct:`): the model, the stage to promote to,
which triggers count, and the schedule, typed at the loader."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlbuild.config.settings import PROJECT_FILE
from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError, check_keys, did_you_mean

KEYS = ("model", "promote_to", "on", "schedule", "drift_window", "labels")
TRIGGERS = ("data", "code", "schedule", "drift")
NAMED = {"hourly": 3600.0, "daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 30 * 86400.0}
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNIT = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class CtConfig:
    """What `mlbuild ct` does when the command line does not say."""

    model: str | None = None
    promote_to: str = "prod"
    on: tuple[str, ...] = TRIGGERS
    schedule: float | None = None  # seconds between scheduled retrainings
    drift_window: float | None = None  # seconds of served traffic the drift trigger reads
    labels: str | None = None  # true answers of served requests: a metric below registered fires


def interval(text: object, where: str) -> float:
    """'daily', 'weekly', '12h', '3d', ... -> seconds; anything else is a config error."""
    if isinstance(text, str):
        if text in NAMED:
            return NAMED[text]
        match = _SPAN.match(text.strip())
        if match and float(match[1]) > 0:
            return float(match[1]) * _UNIT[match[2]]
    raise ConfigError(f"{where}: cannot parse {text!r} as a schedule (use hourly, daily, weekly, "
                      "monthly, or a span like 12h, 3d, 2w)")


def triggers(names: list[str], where: str) -> tuple[str, ...]:
    """Check trigger names (data, code, schedule, drift)."""
    for name in names:
        if name not in TRIGGERS:
            raise ConfigError(f"{where}: unknown trigger '{name}'{did_you_mean(name, TRIGGERS)}"
                              f"; triggers: {', '.join(TRIGGERS)}")
    return tuple(dict.fromkeys(names))


def load(root: Path) -> CtConfig:
    """The `ct:` block (defaults where absent)."""
    path = root / PROJECT_FILE
    doc = load_mapping(path, PROJECT_FILE) if path.is_file() else {}
    block = doc.get("ct") or {}
    where = f"{PROJECT_FILE}.ct"
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping")
    check_keys(block, KEYS, where)
    on = block.get("on", list(TRIGGERS))
    if not isinstance(on, list) or not all(isinstance(t, str) for t in on):
        raise ConfigError(f"{where}.on: expected a list of triggers ({', '.join(TRIGGERS)})")
    for key in ("model", "promote_to", "labels"):
        if key in block and not isinstance(block[key], str):
            raise ConfigError(f"{where}.{key}: expected a name")
    return CtConfig(
        block.get("model"), block.get("promote_to", "prod"), triggers(on, f"{where}.on"),
        interval(block["schedule"], f"{where}.schedule") if "schedule" in block else None,
        interval(block["drift_window"], f"{where}.drift_window")
        if "drift_window" in block else None, block.get("labels"))
