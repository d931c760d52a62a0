"""A model's monitoring settings in mlbuild.yaml (`monitoring.<model>`): the drift method and
threshold for every column or one column, the share of drifted columns that makes the dataset
drift, and where the reference data comes from; typed at the loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.config.settings import PROJECT_FILE
from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError, check_keys, did_you_mean
from mlbuild.monitor.drift import METHODS, ColumnRule, DriftSettings

MODEL_KEYS = ("method", "threshold", "share", "columns", "reference")
COLUMN_KEYS = ("method", "threshold")


def _method(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in METHODS:
        raise ConfigError(f"{where}: unknown drift method {value!r}"
                          f"{did_you_mean(str(value), list(METHODS))}; methods: "
                          f"{', '.join(METHODS)}")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}: expected a number from {low} to {high}, got {value!r}")
    return float(value)


def _rule(block: Any, where: str) -> ColumnRule:
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping with 'method' and/or 'threshold'")
    check_keys(block, COLUMN_KEYS, where)
    return ColumnRule(_method(block.get("method"), f"{where}.method"),
                      _number(block.get("threshold"), f"{where}.threshold", 0, float("inf")))


def _block(root: Path, model: str) -> tuple[dict[str, Any], str]:
    where = f"{PROJECT_FILE}.monitoring"
    path = root / PROJECT_FILE
    doc = load_mapping(path, PROJECT_FILE) if path.is_file() else {}
    monitoring = doc.get("monitoring") or {}
    if not isinstance(monitoring, dict):
        raise ConfigError(f"{where}: expected a mapping of model names")
    block = monitoring.get(model) or {}
    if not isinstance(block, dict):
        raise ConfigError(f"{where}.{model}: expected a mapping")
    check_keys(block, MODEL_KEYS, f"{where}.{model}")
    return block, f"{where}.{model}"


def settings(root: Path, model: str) -> DriftSettings:
    """The drift settings of *model* (defaults where mlbuild.yaml says nothing)."""
    block, where = _block(root, model)
    rule = _rule({k: block.get(k) for k in COLUMN_KEYS}, where)
    columns = block.get("columns") or {}
    if not isinstance(columns, dict):
        raise ConfigError(f"{where}.columns: expected a mapping of column -> method/threshold")
    share = _number(block.get("share"), f"{where}.share", 0.0, 1.0)
    return DriftSettings(rule.method, rule.threshold, 0.5 if share is None else share,
                         {str(c): _rule(b, f"{where}.columns.{c}") for c, b in columns.items()})


def reference_path(root: Path, model: str) -> str | None:
    """`monitoring.<model>.reference`: the reference data file, if set."""
    block, where = _block(root, model)
    ref = block.get("reference")
    if ref is not None and not isinstance(ref, str):
        raise ConfigError(f"{where}.reference: expected a project-relative data file")
    return ref
