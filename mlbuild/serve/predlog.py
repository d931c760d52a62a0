"""The prediction log: one JSON line per answered request (time, request id, model and version,
features, predictions, latency, role), written in batches by a background thread, rotated by
size, and flushed on shutdown. The monitoring issue reads it as the "current" data."""

from __future__ import annotations

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
        """The JSON line (a missing or infinite float is null: JSON has no NaN). orjson writes
        numeric arrays itself: the stdlib's json took 1.2 ms for a 100-row request, on the
        server's CPU."""
        import orjson

        features = dict(zip(self.columns, _columns(self.values), strict=True))
        return orjson.dumps({
            "time": round(self.time, 6), "request_id": self.request_id, "model": self.model,
            "version": self.version, "role": self.role, "rows": len(self.predictions),
            "features": features, "predictions": _plain(self.predictions),
            "latency_ms": round(self.latency_ms, 3)},
            option=orjson.OPT_SERIALIZE_NUMPY, default=_scalar).decode()


NUMERIC = "iufb"  # the numpy kinds orjson writes (NaN and infinities as null)


def _columns(values: Any) -> Any:
    """The columns of a 2-D array, each contiguous (what orjson takes) or as a list."""
    import numpy as np

    if values.dtype.kind in NUMERIC:
        return np.ascontiguousarray(values.T)
    return values.T.tolist()


def _plain(array: Any) -> Any:
    return array if array.dtype.kind in NUMERIC and array.flags.c_contiguous else array.tolist()


def _scalar(value: Any) -> Any:
    """A value orjson does not know (a numpy scalar inside an object array) as JSON."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class PredictionLog:
    """Appends entries to <dir>/predictions.jsonl from a writer thread; a file past
    *max_bytes* is renamed predictions-<UTC time>.jsonl and a new one started."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.written = 0
        self.failed = 0  # entries a write error lost (a full disk): counted, never raised
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = threading.Event()
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
        self._closing.set()
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            if batch[0] is not _STOP:  # then sleep, not wake for every entry: each wake-up
                self._closing.wait(BATCH_SECONDS)  # takes the GIL from a request
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(e is _STOP for e in batch)
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
