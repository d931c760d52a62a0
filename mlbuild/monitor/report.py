"""What one monitoring check found, as the JSON document `mlbuild monitor --json` prints and the
history store keeps (schema 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlbuild.monitor.drift import ColumnDrift, DatasetDrift
from mlbuild.monitor.labels import Performance

SCHEMA = 1


@dataclass(frozen=True)
class ContractShare:
    """How much of the current data the model's input contract would refuse."""

    rows: int
    failing: int
    first_problem: str | None

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        share = self.failing / self.rows if self.rows else 0.0
        return {"rows": self.rows, "failing": self.failing, "share": share,
                "first_problem": self.first_problem}


@dataclass(frozen=True)
class MonitorReport:
    """One check of current data against the reference."""

    model: str | None
    version: str | None
    reference: str
    current: str
    data: DatasetDrift
    prediction: ColumnDrift | None = None
    contract: ContractShare | None = None
    performance: Performance | None = None
    skipped: tuple[str, ...] = ()  # checks that could not run, each with its reason
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        """Dataset drift or prediction drift."""
        return self.data.drifted or bool(self.prediction and self.prediction.drifted)

    @property
    def degraded(self) -> bool:
        """The metric on labelled traffic fell below the registered one."""
        return bool(self.performance and self.performance.degraded)

    def drifted_columns(self) -> list[str]:
        """The features that drifted."""
        return [c.column for c in self.data.columns if c.drifted]

    def to_doc(self) -> dict[str, Any]:
        """The JSON document (schema 1)."""
        return {"schema": SCHEMA, "model": self.model, "version": self.version,
                "reference": self.reference, "current": self.current,
                "drifted": self.drifted, "drifted_columns": self.drifted_columns(),
                "data_drift": self.data.to_doc(),
                "prediction_drift": self.prediction.to_doc() if self.prediction else None,
                "contract": self.contract.to_doc() if self.contract else None,
                "performance": self.performance.to_doc() if self.performance else None,
                "degraded": self.degraded,
                "skipped": list(self.skipped), **self.extra}
