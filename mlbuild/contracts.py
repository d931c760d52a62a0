"""Data contracts: pandera schemas checked on a stage's tabular inputs and outputs."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError, StageFailedError

READERS = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
MAX_VALUES = 5


@dataclass(frozen=True)
class Contract:
    """One data file and the schema it must satisfy."""

    path: str  # project-relative
    schema: str  # 'package.module:attribute' or a project-relative .yaml/.yml file
    side: str  # 'input' or 'output'


def is_file_ref(ref: str) -> bool:
    """A schema reference naming a pandera YAML file (rather than module:attribute)."""
    return ref.endswith((".yaml", ".yml"))


def check_ref(ref: Any, where: str) -> str:
    """Validate the shape of a schema reference."""
    if not isinstance(ref, str) or not (is_file_ref(ref) or ":" in ref):
        raise ConfigError(
            f"{where}: a schema is 'package.module:attribute' or a pandera .yaml file, "
            f"got {ref!r}"
        )
    return ref


def _load_schema(root: Path, ref: str) -> Any:
    import pandera.pandas as pa

    if is_file_ref(ref):
        try:
            return pa.DataFrameSchema.from_yaml(str(root / ref))
        except Exception as exc:
            raise ConfigError(f"schema '{ref}': cannot load: {exc}") from exc
    module_name, _, attr = ref.partition(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"schema '{ref}': cannot import: {exc}") from exc
    schema = obj() if callable(obj) and not isinstance(obj, pa.DataFrameSchema) else obj
    if not isinstance(schema, pa.DataFrameSchema):
        raise ConfigError(f"schema '{ref}' is not a pandera DataFrameSchema")
    return schema


def _read(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise ConfigError(f"contract on '{path.name}': only {', '.join(READERS)} files can be checked")


def _summary(exc: Any) -> str:
    cases = exc.failure_cases
    if cases is None or len(cases) == 0:
        return " ".join(str(exc).split())[:300]
    first = cases.iloc[0]
    same = cases[(cases["column"] == first["column"]) & (cases["check"] == first["check"])]
    values = ", ".join(repr(v) for v in same["failure_case"].head(MAX_VALUES).tolist())
    more = f" (+{len(same) - MAX_VALUES} more)" if len(same) > MAX_VALUES else ""
    others = len(cases) - len(same)
    tail = f"; {others} other failure(s)" if others else ""
    column = first["column"] if first["column"] is not None else "(table)"
    return f"column '{column}' failed {first['check']}: {values}{more}{tail}"


def validate(root: Path, contract: Contract, stage: str) -> None:
    """Check one file against its schema; a violation fails the stage with a report."""
    import pandera.errors as perr

    schema = _load_schema(root, contract.schema)
    path = root / contract.path
    if not path.is_file():
        raise StageFailedError(
            f"stage '{stage}': {contract.side} '{contract.path}' named in a contract is not a file"
        )
    try:
        schema.validate(_read(path), lazy=True)
    except perr.SchemaErrors as exc:
        raise StageFailedError(
            f"stage '{stage}': {contract.side} '{contract.path}' violates its contract "
            f"({contract.schema}): {_summary(exc)}"
        ) from exc
    except perr.SchemaError as exc:
        raise StageFailedError(
            f"stage '{stage}': {contract.side} '{contract.path}' violates its contract "
            f"({contract.schema}): {' '.join(str(exc).split())[:300]}"
        ) from exc
