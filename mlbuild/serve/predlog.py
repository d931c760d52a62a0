"""The prediction log: one JSON line per answered request (time, request id, model and version,
features, predictions, latency, role), written in batches by a background thread, rotated by
size, and flushed on shutdown. The monitoring issue reads it as the "current" data."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE = "predictions.jsonl"
BATCH_SECONDS = 0.25  # the longest an entry waits in memory before it is written
_STOP = object()


def default_dir(root: Path, model: str) -> Path:
    """.mlbuild/predictions/<model>, the whole folder ignored by git (logs are not sources)."""
    base = root / ".mlbuild" / "predictions"
    base.mkdir(parents=True, exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return base / model


@dataclass(frozen=True)
class Entry:
    """One request's record, kept as arrays until the writer turns it into JSON (so a
    request pays for a queue put, not for serialisation)."""

    time: float
    request_id: str
    model: str
    version: str
    role: str  # "answered" or "shadow"
    columns: list[str]
    values: Any  # 2-D array of the checked features
    predictions: Any  # 1-D array
    latency_ms: float

    def to_json(self) -> str:
        """The JSON line (a missing or infinite float is null: JSON has no NaN)."""
        features = dict(zip(self.columns, _json_safe(self.values).T.tolist(), strict=True))
        return json.dumps({
            "time": round(self.time, 6), "request_id": self.request_id, "model": self.model,
            "version": self.version, "role": self.role, "rows": len(self.predictions),
            "features": features, "predictions": _json_safe(self.predictions).tolist(),
            "latency_ms": round(self.latency_ms, 3)}, separators=(",", ":"))


def _json_safe(array: Any) -> Any:
    """*array* with NaN and infinities as None (json.dumps would write the invalid NaN)."""
    import numpy as np

    if array.dtype.kind != "f":
        return array
    finite = np.isfinite(array)
    if finite.all():
        return array
    safe = array.astype(object)
    safe[~finite] = None
    return safe


class PredictionLog:
    """Appends entries to <dir>/predictions.jsonl from a writer thread; a file past
    *max_bytes* is renamed predictions-<UTC time>.jsonl and a new one started."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.written = 0
        self.failed = 0  # entries a write error lost (a full disk): counted, never raised
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        """The file being appended to."""
        return self.directory / FILE

    def add(self, entry: Entry) -> None:
        """Queue an entry (never blocks)."""
        self._queue.put(entry)

    def close(self) -> None:
        """Write every queued entry, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            deadline = time.monotonic() + BATCH_SECONDS
            while batch[-1] is not _STOP and (wait := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._queue.get(timeout=wait))
                except queue.Empty:
                    break
            stopping = batch[-1] is _STOP
            entries = [e for e in batch if e is not _STOP]
            if entries:
                self._write(entries)

    def _write(self, entries: list[Entry]) -> None:
        text = "".join(e.to_json() + "\n" for e in entries).encode()
        try:
            with open(self.path, "ab") as handle:
                handle.write(text)
                size = handle.tell()
        except OSError:  # the server keeps answering; /metrics shows the loss
            self.failed += len(entries)
            return
        self.written += len(entries)
        if size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.directory / f"predictions-{stamp}.jsonl"
        n = 1
        while target.exists():
            n += 1
            target = self.directory / f"predictions-{stamp}-{n}.jsonl"
        os.replace(self.path, target)
