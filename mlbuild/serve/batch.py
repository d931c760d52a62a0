"""Batch scoring (`mlbuild predict`): a CSV or Parquet file checked against the model's input
contract, as every request to the server is, and its predictions written beside its rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.files.temp import tmp_beside
from mlbuild.serve.service import load_version
from mlbuild.serve.source import Source

FORMATS = (".csv", ".parquet", ".pq", ".jsonl")
PREDICTION = "prediction"


@dataclass(frozen=True)
class Scored:
    """What `mlbuild predict` wrote."""

    model: str
    version: str
    rows: int
    output: Path


def _format(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: unknown {role} format '{suffix or '(none)'}' (one of "
                         f"{', '.join(FORMATS)})")
    return {".pq": ".parquet"}.get(suffix, suffix)


def read(path: Path) -> Any:
    """The input table; an unreadable file is the user's error."""
    import pandas as pd

    kind = _format(path, "input")
    if not path.is_file():
        raise UsageError(f"{path}: no such input file")
    try:
        if kind == ".csv":
            return pd.read_csv(path)
        if kind == ".jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UsageError(f"{path}: cannot read it as {kind[1:]} ({exc})") from exc


def write(frame: Any, path: Path) -> None:
    """Write atomically (a temporary file beside it, then a rename)."""
    kind = _format(path, "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_beside(path)
    try:
        if kind == ".csv":
            frame.to_csv(tmp, index=False)
        elif kind == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def score(root: Path, source: Source, input_path: Path, output: Path) -> Scored:
    """Check every row of *input_path* against the contract, predict, write *output* (the
    checked features and a 'prediction' column). ContractViolation names file, row, column."""
    from mlbuild.serve.contract import ContractViolation

    _format(output, "output")  # before the work, not after it
    loaded = load_version(root, source)
    frame = read(input_path)
    try:
        checked = loaded.contract.check(frame)
    except ContractViolation as exc:
        raise ContractViolation(f"{input_path}: {exc}", exc.column, exc.rule) from exc
    result = checked.copy()
    result[PREDICTION] = loaded.model.predict(checked)
    write(result, output)
    return Scored(source.name, source.version, len(result), output)
