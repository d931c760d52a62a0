"""Where a served model's input contract is declared: `serving:` in mlbuild.yaml, or else the
data contract on the raw input upstream of the artifact in the pipeline that built it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.config.settings import PROJECT_FILE
from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError, UsageError, check_keys

MODEL_KEYS = ("input", "drop")


def _serving(root: Path) -> dict[str, Any]:
    path = root / PROJECT_FILE
    if not path.is_file():
        return {}
    block = load_mapping(path, PROJECT_FILE).get("serving") or {}
    if not isinstance(block, dict):
        raise ConfigError(f"{PROJECT_FILE}.serving: expected a mapping of model names")
    return block


def configured(root: Path, model: str) -> tuple[str, list[str] | None] | None:
    """(schema reference, columns to drop or None) from `serving.<model>`, if declared."""
    from mlbuild.contracts import check_ref

    block = _serving(root).get(model)
    if block is None:
        return None
    where = f"{PROJECT_FILE}.serving.{model}"
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping with 'input' (and 'drop')")
    check_keys(block, MODEL_KEYS, where)
    if "input" not in block:
        raise ConfigError(f"{where}: 'input' is required (a schema: 'module:attribute' or a "
                          "pandera .yaml file)")
    drop = block.get("drop")
    if drop is not None and (not isinstance(drop, list)
                             or not all(isinstance(c, str) for c in drop)):
        raise ConfigError(f"{where}.drop: expected a list of column names")
    return check_ref(block["input"], f"{where}.input"), drop


def upstream(root: Path, model: str, commit: str | None) -> tuple[str, None] | None:
    """The contract on the raw data (an input contract on a file no stage writes) upstream of
    the artifact *model* at *commit* (None: in the working tree); None when there is none."""
    from mlbuild.registry.evidence import gather

    try:
        evidence = gather(root, model, commit)
    except UsageError:  # not an artifact dvc.lock records at that commit: nothing to follow
        return None
    derived = {c.path for c in evidence.contracts if c.side == "output"}
    raw = [c for c in evidence.contracts if c.side == "input" and c.path not in derived]
    return (raw[0].schema, None) if raw else None
