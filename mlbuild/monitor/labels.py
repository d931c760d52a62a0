"""The served model's metric on recent traffic, once labels arrive: a labels file joined on the
request id (and the row within a request) with what the server answered, compared with the
metric the version was registered with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError

METRIC = "accuracy"  # of a classifier's answers; the example registers it too
TOLERANCE = 0.02  # below the registered value by more than this: degraded


@dataclass(frozen=True)
class Performance:
    """The metric on labelled served rows against the registered one."""

    metric: str
    rows: int
    current: float
    registered: float | None
    tolerance: float

    @property
    def degraded(self) -> bool:
        """Worse than registered by more than the tolerance."""
        return self.registered is not None and self.current < self.registered - self.tolerance

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        return {"metric": self.metric, "rows": self.rows, "current": self.current,
                "registered": self.registered, "tolerance": self.tolerance,
                "degraded": self.degraded}


def read_labels(path: Path) -> Any:
    """request_id, label and optionally row (the row within a multi-row request; default 0)."""
    from mlbuild.monitor.sources import read_table

    frame = read_table(path, "labels")
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise UsageError(f"labels {path}: needs the columns request_id and label (and row for "
                         f"multi-row requests); missing: {', '.join(missing)}")
    if "row" not in frame.columns:
        frame = frame.assign(row=0)
    return frame.astype({"request_id": str, "row": int})


def performance(served: Any, labels: Any, registered: dict[str, float],
                tolerance: float = TOLERANCE) -> Performance | str:
    """The accuracy of the served answers on the labelled rows, or why it cannot be told."""
    if "_request_id" not in served.columns:
        return "labels join the prediction log: give no --current file"
    keys = served.assign(request_id=served["_request_id"].astype(str), row=served["_row"])
    joined = keys.merge(labels[["request_id", "row", "label"]], on=["request_id", "row"])
    if not len(joined):
        return "no labelled request among the served rows"
    correct = (joined["_prediction"].astype(str) == joined["label"].astype(str)).mean()
    return Performance(METRIC, len(joined), float(correct), registered.get(METRIC), tolerance)
