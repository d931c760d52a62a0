"""Per-column and dataset drift between a reference and a current sample, with Evidently's
default choice of method and thresholds (scipy computes every statistic):

- a reference of at most 1,000 rows: numeric columns with more than 5 distinct values get the
  two-sample Kolmogorov-Smirnov test; other columns chi-squared, or a two-proportion z-test
  when only 2 values occur; drift when p < 0.05;
- a larger reference: numeric columns with more than 5 distinct values get the Wasserstein
  distance normed by the reference's standard deviation, the others the Jensen-Shannon
  distance; drift when the distance >= 0.1.

PSI is reported beside every column. The dataset drifts when the share of drifted columns
reaches 0.5. Methods, thresholds and the share can be set per model (monitor.config).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlbuild.monitor import binning

SMALL_REFERENCE = 1000  # rows: up to here, statistical tests; beyond, distances
FEW_VALUES = 5  # distinct values: up to here a numeric column is treated as categorical
P_VALUE = 0.05
DISTANCE = 0.1
DRIFT_SHARE = 0.5
METHODS = {  # name -> (what the score is, default threshold)
    "ks": ("p_value", P_VALUE),
    "chisquare": ("p_value", P_VALUE),
    "z": ("p_value", P_VALUE),
    "wasserstein": ("distance", DISTANCE),
    "jensenshannon": ("distance", DISTANCE),
    "psi": ("distance", DISTANCE),
}
NUMERIC_ONLY = {"ks", "wasserstein", "z"}


@dataclass(frozen=True)
class ColumnRule:
    """How one column is judged; None: the default."""

    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class DriftSettings:
    """A model's drift settings (mlbuild.yaml `monitoring.<model>`)."""

    method: str | None = None  # for every column
    threshold: float | None = None
    share: float = DRIFT_SHARE
    columns: Mapping[str, ColumnRule] = field(default_factory=dict)

    def rule(self, column: str) -> ColumnRule:
        """The column's own rule, else the model-wide one."""
        own = self.columns.get(column, ColumnRule())
        return ColumnRule(own.method or self.method, own.threshold if own.threshold is not None
                          else self.threshold)


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict on one column."""

    column: str
    kind: str  # "numerical" or "categorical"
    method: str
    score: float  # a p-value (drift when below the threshold) or a distance (when at or above)
    threshold: float
    drifted: bool
    psi: float
    reference_rows: int
    current_rows: int

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        return {"column": self.column, "kind": self.kind, "method": self.method,
                "score": self.score, "threshold": self.threshold, "drifted": self.drifted,
                "psi": self.psi, "reference_rows": self.reference_rows,
                "current_rows": self.current_rows}


@dataclass(frozen=True)
class DatasetDrift:
    """The verdict on a table: each column's, and whether enough of them drifted."""

    columns: tuple[ColumnDrift, ...]
    share: float  # of columns that drifted
    threshold_share: float

    @property
    def drifted(self) -> bool:
        """Dataset drift: the share of drifted columns reached the threshold."""
        return bool(self.columns) and self.share >= self.threshold_share

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        return {"drifted": self.drifted, "share_drifted": self.share,
                "threshold_share": self.threshold_share,
                "columns": [c.to_doc() for c in self.columns]}


def column_kind(series: Any) -> str:
    """Numerical for numbers (booleans excepted), categorical for anything else."""
    from pandas.api import types

    numeric = types.is_numeric_dtype(series) and not types.is_bool_dtype(series)
    return "numerical" if numeric else "categorical"


def default_method(reference: Any, current: Any, kind: str) -> str:
    """Evidently's default method for a column of this kind and these samples."""
    import pandas as pd

    distinct = pd.concat([reference, current]).nunique()
    few = kind == "categorical" or distinct <= FEW_VALUES
    if len(reference) <= SMALL_REFERENCE:
        if few:
            return "chisquare" if distinct > 2 else "z"
        return "ks"
    return "jensenshannon" if few else "wasserstein"


def _score(method: str, reference: Any, current: Any, kind: str) -> float:
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance

    if method == "ks":
        return float(stats.ks_2samp(reference, current).pvalue)
    if method == "wasserstein":
        norm = max(float(np.std(reference)), 0.001)  # a constant reference column
        return float(stats.wasserstein_distance(reference, current) / norm)
    if method == "chisquare":
        observed, expected = binning.counts(reference, current)
        expected = expected * (observed.sum() / expected.sum())
        return float(stats.chisquare(observed, expected).pvalue)
    if method == "z":
        return binning.two_proportions_p(reference, current)
    ref_share, cur_share = binning.shares(reference, current, kind, fill_zeros=method == "psi")
    if method == "jensenshannon":
        return float(distance.jensenshannon(ref_share, cur_share))
    return binning.psi(ref_share, cur_share)


def column_drift(name: str, reference: Any, current: Any, rule: ColumnRule | None = None,
                 kind: str | None = None) -> ColumnDrift:
    """Judge one column; nulls are left out of both samples."""
    rule = rule or ColumnRule()
    reference, current = reference.dropna(), current.dropna()
    kind = kind or column_kind(reference)
    method = rule.method or default_method(reference, current, kind)
    if kind == "categorical" and method in NUMERIC_ONLY - {"z"}:
        raise ValueError(f"column '{name}': {method} needs numbers; the column is categorical")
    what, default = METHODS[method]
    threshold = rule.threshold if rule.threshold is not None else default
    score = _score(method, reference, current, kind)
    drifted = score < threshold if what == "p_value" else score >= threshold
    ref_share, cur_share = binning.shares(reference, current, kind, fill_zeros=True)
    return ColumnDrift(name, kind, method, score, threshold, bool(drifted),
                       binning.psi(ref_share, cur_share), len(reference), len(current))


def dataset_drift(reference: Any, current: Any, settings: DriftSettings | None = None
                  ) -> DatasetDrift:
    """Judge every column the two tables share (the caller checks they are the same)."""
    settings = settings or DriftSettings()
    verdicts = tuple(column_drift(str(name), reference[name], current[name],
                                  settings.rule(str(name)))
                     for name in reference.columns)
    share = sum(v.drifted for v in verdicts) / len(verdicts) if verdicts else 0.0
    return DatasetDrift(verdicts, share, settings.share)
