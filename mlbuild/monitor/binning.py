"""How two samples are put into common bins before they are compared: value counts for
categories and numbers with few values, Sturges histogram bins over both samples otherwise."""

from __future__ import annotations

from typing import Any

MANY_VALUES = 20  # distinct reference values: above this a numeric column is binned
EPSILON_FLOOR = 0.0001


def _keys(reference: Any, current: Any) -> list[Any]:
    return sorted(set(reference.unique()) | set(current.unique()), key=repr)


def counts(reference: Any, current: Any) -> tuple[Any, Any]:
    """(current counts, reference counts) per value that occurs in either sample."""
    import numpy as np

    keys = _keys(reference, current)
    ref, cur = reference.value_counts(), current.value_counts()
    return (np.array([cur.get(k, 0) for k in keys], dtype=float),
            np.array([ref.get(k, 0) for k in keys], dtype=float))


def shares(reference: Any, current: Any, kind: str, fill_zeros: bool) -> tuple[Any, Any]:
    """The share of each sample in each bin; with *fill_zeros*, empty bins get a tiny share
    so that logarithms stay finite (PSI)."""
    import numpy as np
    import pandas as pd

    if kind == "numerical" and reference.nunique() > MANY_VALUES:
        both = np.asarray(pd.concat([reference, current]).to_numpy(dtype=float))
        edges = np.histogram_bin_edges(both, bins="sturges")
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
    else:
        cur_counts, ref_counts = counts(reference, current)
        ref, cur = ref_counts / len(reference), cur_counts / len(current)
    if fill_zeros:
        ref, cur = _fill(ref), _fill(cur)
    return ref, cur


def _fill(share: Any) -> Any:
    import numpy as np

    positive = share[share > 0]
    if not len(positive):
        return share
    smallest = positive.min()
    tiny = smallest / 10**6 if smallest <= EPSILON_FLOOR else EPSILON_FLOOR
    return np.where(share == 0, tiny, share)


def psi(reference: Any, current: Any) -> float:
    """Population stability index of two share vectors (no empty bins)."""
    import numpy as np

    return float(np.sum((reference - current) * np.log(reference / current)))


def two_proportions_p(reference: Any, current: Any) -> float:
    """Two-sided p-value of the z-test that the first value's share is the same in both."""
    import numpy as np
    from scipy.stats import norm

    keys = _keys(reference, current)
    if len(keys) < 2:
        return 1.0  # one value, the same in both samples
    first = keys[0]
    p1, p2 = float((reference == first).mean()), float((current == first).mean())
    n1, n2 = len(reference), len(current)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    spread = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * (1 - norm.cdf(abs((p1 - p2) / spread))))
