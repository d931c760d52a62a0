"""Two versions side by side on the same traffic, from the prediction log of a server running a
canary (`serve --canary`: each request answered by one of them) or a shadow (`serve --shadow`:
the candidate scores a copy of every request): how many rows each saw, how often the shadow
agrees with the answer given, how far apart their predictions are distributed, and each one's
accuracy where labels arrived."""

from __future__ import annotations

from typing import Any

SHADOW = "shadow"


def _accuracy(rows: Any, labels: Any) -> float | None:
    if labels is None:
        return None
    keyed = rows.assign(request_id=rows["_request_id"].astype(str), row=rows["_row"])
    joined = keyed.merge(labels[["request_id", "row", "label"]], on=["request_id", "row"])
    if not len(joined):
        return None
    return float((joined["_prediction"].astype(str) == joined["label"].astype(str)).mean())


def _agreement(served: Any) -> dict[str, Any] | None:
    shadow = served[served["_role"] == SHADOW]
    if not len(shadow):
        return None
    answered = served[served["_role"] != SHADOW]
    pairs = answered.merge(shadow, on=["_request_id", "_row"], suffixes=("", "_shadow"))
    if not len(pairs):
        return None
    agree = (pairs["_prediction"].astype(str) == pairs["_prediction_shadow"].astype(str))
    return {"rows": len(pairs), "share": float(agree.mean())}


def compare(served: Any, labels: Any | None) -> dict[str, Any] | None:
    """The comparison, or None when the log holds one version in one role."""
    import pandas as pd

    from mlbuild.monitor.drift import column_drift

    groups = list(served.groupby(["_version", "_role"], sort=True))
    if len(groups) < 2:
        return None
    versions = [{"version": version, "role": role, "rows": len(rows),
                 "accuracy": _accuracy(rows, labels)} for (version, role), rows in groups]
    (_, first), (_, second) = groups[0], groups[1]
    distance = column_drift("prediction", pd.Series(first["_prediction"].astype(str).tolist()),
                            pd.Series(second["_prediction"].astype(str).tolist()),
                            kind="categorical")
    return {"versions": versions, "shadow_agreement": _agreement(served),
            "prediction_difference": {"between": [groups[0][0], groups[1][0]],
                                      "method": distance.method, "score": distance.score,
                                      "threshold": distance.threshold,
                                      "different": distance.drifted}}
