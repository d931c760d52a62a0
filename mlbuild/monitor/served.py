"""The served data, read back from the prediction log `mlbuild serve` writes: one JSON line per
request (time, request id, model, version, role, features by column, predictions), in
<dir>/predictions.jsonl and its rotated predecessors predictions-<time>.jsonl (with several
server workers, one such set per worker in <dir>/worker-<k>/).

A log being written is read up to its last complete line; a line cut short or not JSON (a
crash mid-write, a truncated copy) is skipped and counted, never fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Served:
    """Rows the server answered (or shadowed) in a window."""

    frame: Any  # features, then _prediction, _version, _role, _request_id, _row, _time
    files: int
    skipped_lines: int


def _files(directory: Path) -> list[Path]:
    """The log files of one server (or of each worker of one: worker-<k>/), oldest first."""
    found = []
    for folder in [directory, *sorted(directory.glob("worker-*"))]:
        current = folder / "predictions.jsonl"
        found += sorted(folder.glob("predictions-*.jsonl")) + (
            [current] if current.is_file() else [])
    return found


def _entries(path: Path, counts: list[int]) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines = lines[:-1]  # a line still being written: not yet an entry
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            counts[0] += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("features"), dict):
            yield entry
        else:
            counts[0] += 1


def _rows(entry: dict[str, Any]) -> dict[str, list[Any]] | None:
    features, predictions = entry["features"], entry.get("predictions")
    rows = len(predictions) if isinstance(predictions, list) else -1
    if rows <= 0 or any(not isinstance(v, list) or len(v) != rows for v in features.values()):
        return None
    meta = {"_prediction": predictions, "_version": [entry.get("version")] * rows,
            "_role": [entry.get("role", "answered")] * rows,
            "_request_id": [entry.get("request_id")] * rows, "_row": list(range(rows)),
            "_time": [entry.get("time")] * rows}
    return {**features, **meta}


def read(directory: Path, since: float | None = None, model: str | None = None) -> Served:
    """Every logged row (of *model*, if given) at or after *since* (epoch seconds)."""
    import pandas as pd

    counts, parts = [0], []
    files = _files(directory) if directory.is_dir() else []
    for path in files:
        for entry in _entries(path, counts):
            if since is not None and float(entry.get("time") or 0) < since:
                continue
            if model is not None and entry.get("model") != model:
                continue
            rows = _rows(entry)
            if rows is None:
                counts[0] += 1
            else:
                parts.append(pd.DataFrame(rows))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return Served(frame, len(files), counts[0])
