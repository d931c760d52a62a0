"""The pixel transform, in one place: prepare writes its output, train puts it in the model.

``prepare`` writes the training splits through :class:`Normalise`, and ``train`` pickles a
scikit-learn ``Pipeline([("normalise", Normalise(...)), ("classifier", fitted)])``, so the
artifact that is registered and served takes the raw pixels clients send (the contract of
``data/raw/*.csv``: integers 0..16) and cannot drift from what the classifier was trained on.

The pickle refers to this class by name (``stages.features.Normalise``): whatever loads
``models/model.pkl`` (the server, ``mlbuild predict``, MLflow with ``code_paths``) needs this
project's ``stages`` package importable. Its settings (``enabled``) live in the pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

PIXEL_MAX = 16.0  # raw pixel intensities are integers 0..16 (stages.schemas.raw_schema)


class Normalise(TransformerMixin, BaseEstimator):
    """Scale raw pixels 0..16 to [0, 1] as floats (only cast to float when not ``enabled``).

    Stateless: ``fit`` learns nothing, so the same object transforms before and after fitting,
    and a data frame keeps its columns (the classifier was fitted on named columns).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def fit(self, X: Any, y: Any = None) -> Normalise:  # noqa: N803 (scikit-learn's names)
        """Nothing to learn; returns self."""
        return self

    def transform(self, X: Any) -> Any:  # noqa: N803
        """Raw pixels -> the classifier's units (a DataFrame stays a DataFrame)."""
        return _as_float(X) / self._scale()

    def inverse_transform(self, X: Any) -> Any:  # noqa: N803
        """The classifier's units -> raw pixels; exact, since k/16 is exact in binary floats."""
        return _as_float(X) * self._scale()

    def _scale(self) -> float:
        return PIXEL_MAX if self.enabled else 1.0

    def __sklearn_is_fitted__(self) -> bool:
        """Always fitted (stateless), so a Pipeline built around a fitted model can predict."""
        return True


def _as_float(X: Any) -> Any:  # noqa: N803
    if isinstance(X, pd.DataFrame):
        return X.astype(float)
    return np.asarray(X, dtype=float)
