"""Per-request prediction without the wrappers' per-call overhead, for the models the field
serves most: a LightGBM scikit-learn estimator, alone or at the end of a scikit-learn Pipeline.

`LGBMClassifier.predict` on a one-row frame spends about 1.7 ms in scikit-learn's and
LightGBM's input handling before its trees run in 0.1 ms. The fast path runs the pipeline's
transforms as they are, then the booster on a float64 array with one thread (a server answers
many requests at once; a thread pool per request only adds start-up), and maps the winning
class the way LGBMClassifier does. It is not trusted on faith: the first request is answered
both ways and the fast path is kept only if the answers are identical; any error in it hands
the model back to its own predict() for good.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Predict = Callable[[Any], Any]


def _lightgbm(estimator: Any) -> Predict | None:
    """A booster-level predict equivalent to *estimator*.predict, or None."""
    module = type(estimator).__module__
    if not module.startswith("lightgbm") or not hasattr(estimator, "booster_"):
        return None
    import numpy as np

    booster = estimator.booster_
    names = list(getattr(estimator, "feature_name_", []) or [])
    classes = getattr(estimator, "classes_", None)

    def matrix(frame: Any) -> Any:
        if hasattr(frame, "columns") and names and list(frame.columns) != names:
            frame = frame[names]  # the order the booster was fitted on
        return np.asarray(frame, dtype=np.float64)

    if classes is None:
        return lambda frame: booster.predict(matrix(frame), num_threads=1)

    def classify(frame: Any) -> Any:
        scores = booster.predict(matrix(frame), num_threads=1)
        index = (scores > 0.5).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return classes[index]

    return classify


def _pipeline(model: Any) -> Predict | None:
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or not steps:
        return _lightgbm(model)
    last = _lightgbm(steps[-1][1])
    transforms = [step for _, step in steps[:-1] if step not in (None, "passthrough")]
    if last is None or not all(hasattr(t, "transform") for t in transforms):
        return None

    def predict(frame: Any) -> Any:
        for transform in transforms:
            frame = transform.transform(frame)
        return last(frame)

    return predict


class Predictor:
    """model.predict, through the fast path once the first request proved it identical."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._fast = _pipeline(model)
        self._proven = False
        self._lock = threading.Lock()

    @property
    def fast(self) -> bool:
        """The fast path is in use (or still to be proven)."""
        return self._fast is not None

    def __call__(self, frame: Any) -> Any:
        fast = self._fast
        if fast is None:
            return self.model.predict(frame)
        if self._proven:
            try:
                return fast(frame)
            except Exception:
                self._fast = None
                return self.model.predict(frame)
        return self._prove(fast, frame)

    def _prove(self, fast: Predict, frame: Any) -> Any:
        import numpy as np

        expected = self.model.predict(frame)
        with self._lock:
            try:
                got, want = np.asarray(fast(frame)), np.asarray(expected)
                same = got.dtype == want.dtype and np.array_equal(got, want)
            except Exception:
                same = False
            if same:
                self._proven = True
            else:
                self._fast = None
        return expected
