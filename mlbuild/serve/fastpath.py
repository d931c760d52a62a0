"""Per-request prediction without the wrappers' per-call overhead, for the models the field
serves most: a LightGBM scikit-learn estimator, alone or at the end of a scikit-learn Pipeline.

`LGBMClassifier.predict` on a one-row frame spends about 1.7 ms in scikit-learn's and
LightGBM's input handling before its trees run in 0.1 ms. The fast path runs the pipeline's
transforms as they are, then the booster on a float64 array with one thread (a server answers
many requests at once; a thread pool per request only adds start-up), and maps the winning
class the way LGBMClassifier does. Faster still, once compiled (mlbuild.serve.compiled), the
trees run as machine code: 100 rows of the example's 600 trees in a quarter of the time.

Nothing here is trusted on faith. What the client gets is model.predict's answer: class labels
for a classifier, values for a regressor; a path is used only once a request answered both ways
gave the same answer, value for value and of the same type, and any error in a path hands the
request to the next one (compiled -> booster -> model.predict) for good. The compiled path must
also reproduce LightGBM's raw scores bit for bit on that request, and a row whose two best
classes' raw scores are within TIE of each other (where LightGBM's probabilities could round
into a tie that its argmax breaks differently) is answered by the booster itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Predict = Callable[[Any], Any]
TIE = 1e-9  # raw-score gap under which a class is left to LightGBM's own probabilities
# objectives whose answer is the raw score itself, or decided by its sign (binary) or argmax
VALUE_OBJECTIVES = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")


class _Booster:
    """A fitted LightGBM estimator's booster and how its predict() makes answers of scores."""

    def __init__(self, estimator: Any) -> None:
        self.booster = estimator.booster_
        self.names = list(getattr(estimator, "feature_name_", []) or [])
        self.classes = getattr(estimator, "classes_", None)
        self.text: str | None = None  # the model as text, when lleaves can compile it
        self._names_index: Any = None
        text = self.booster.model_to_string()
        objective = _header(text, "objective")
        alpha = objective.split("sigmoid:")[-1] if "sigmoid:" in objective else "1"
        self.tie = TIE / max(float(alpha), 1e-300) if objective.startswith("binary") else TIE
        kind = objective.split(" ")[0]
        if "average_output" not in text.split("\nTree=", 1)[0] and "sqrt" not in objective and (
                kind in ("binary", "multiclass") if self.classes is not None
                else kind in VALUE_OBJECTIVES):
            self.text = text

    def matrix(self, frame: Any) -> Any:
        """The float64 array the booster takes, columns in the order it was fitted on."""
        import numpy as np

        if not hasattr(frame, "columns"):
            return np.asarray(frame, dtype=np.float64)
        if self.names and not frame.columns.equals(self._index()):
            frame = frame[self.names]
        return frame.to_numpy(dtype=np.float64)  # np.asarray(frame) costs 20 times as much

    def _index(self) -> Any:
        """The fitted column names as a pandas Index (built once: comparing a list of 64
        names with a frame's columns costs more than the checks)."""
        if self._names_index is None:
            import pandas as pd

            self._names_index = pd.Index(self.names)
        return self._names_index

    def answer(self, matrix: Any) -> Any:
        """The estimator's predict() on *matrix*, through the booster."""
        import numpy as np

        scores = self.booster.predict(matrix, num_threads=1)
        if self.classes is None:
            return scores
        index = (scores > 0.5).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes[index]

    def raw(self, matrix: Any) -> Any:
        """LightGBM's own raw scores of *matrix*."""
        return self.booster.predict(matrix, num_threads=1, raw_score=True)

    def from_raw(self, raw: Any, matrix: Any) -> Any:
        """The estimator's predict() from raw scores; near ties decided by the booster."""
        import numpy as np

        if self.classes is None:
            return raw
        if raw.ndim == 1:
            index, near = (raw > 0).astype(int), np.abs(raw) < self.tie
        else:
            index = np.argmax(raw, axis=1)
            top = np.partition(raw, -2, axis=1)
            near = top[:, -1] - top[:, -2] < self.tie
        if near.any():
            probabilities = self.booster.predict(matrix[near], num_threads=1)
            index[near] = (probabilities > 0.5).astype(int) if raw.ndim == 1 else np.argmax(
                probabilities, axis=1)
        return self.classes[index]


def _header(text: str, key: str) -> str:
    """A `key=value` line of a LightGBM model's header ("" when absent)."""
    for line in text.split("\nTree=", 1)[0].splitlines():
        if line.startswith(f"{key}="):
            return line[len(key) + 1:]
    return ""


def _lightgbm(estimator: Any) -> _Booster | None:
    module = type(estimator).__module__
    if not module.startswith("lightgbm") or not hasattr(estimator, "booster_"):
        return None
    return _Booster(estimator)


def _plan(model: Any) -> tuple[list[Any], _Booster] | None:
    """(the pipeline's transforms, its LightGBM estimator), or None for any other model."""
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or not steps:
        last = _lightgbm(model)
        return None if last is None else ([], last)
    last = _lightgbm(steps[-1][1])
    transforms = [step for _, step in steps[:-1] if step not in (None, "passthrough")]
    if last is None or not all(hasattr(t, "transform") for t in transforms):
        return None
    return transforms, last


def _same(got: Any, want: Any) -> bool:
    import numpy as np

    got, want = np.asarray(got), np.asarray(want)
    return bool(got.dtype == want.dtype and np.array_equal(got, want))


class Predictor:
    """model.predict, through the fastest path a request has proven identical to it."""

    def __init__(self, model: Any, compile_trees: bool = False) -> None:
        """*compile_trees*: compile a LightGBM model's trees now (seconds, unless cached)."""
        self.model = model
        plan = _plan(model)
        self._transforms: list[Any] = plan[0] if plan is not None else []
        self._booster: _Booster | None = plan[1] if plan is not None else None
        self._proven = False  # the booster path gave model.predict's answer
        self._candidate: Predict | None = None  # compiled raw scores, still to be proven
        self._compiled: Predict | None = None  # compiled raw scores, proven
        self._state = "none"  # where compiling stands (compile_state)
        self._lock = threading.Lock()
        text = self._booster.text if self._booster is not None else None
        if compile_trees and text is not None:
            from mlbuild.serve.compiled import compile_trees as compile_text

            self._candidate, self._state = compile_text(text)

    @property
    def fast(self) -> bool:
        """The booster path is in use (or still to be proven)."""
        return self._booster is not None

    @property
    def path(self) -> str:
        """How answers are computed now: "compiled", "booster" or "model"."""
        if self._booster is None:
            return "model"
        return "compiled" if self._compiled is not None else "booster"

    @property
    def compile_state(self) -> str:
        """Where compiling the trees stands: "none" (not attempted), "ready" (compiled, the
        first request to prove it), "in use", "differs" (the proof failed), "unavailable:
        ..." (no lleaves) or "failed: ..."."""
        return self._state

    def __call__(self, frame: Any) -> Any:
        booster = self._booster
        if booster is None:
            return self.model.predict(frame)
        if not self._proven:
            return self._prove(booster, frame)
        try:
            return self._fast(booster, frame)
        except Exception:
            self._booster = self._compiled = None
            return self.model.predict(frame)

    def _fast(self, booster: _Booster, frame: Any) -> Any:
        """The answer through the compiled trees or the booster, once proven."""
        matrix = booster.matrix(self._transform(frame))
        compiled = self._compiled
        if compiled is not None:
            try:
                return booster.from_raw(compiled(matrix), matrix)
            except Exception:  # the booster answers this request and the next ones
                self._compiled, self._state = None, "failed: an error on a request"
        return booster.answer(matrix)

    def _transform(self, frame: Any) -> Any:
        for transform in self._transforms:
            frame = transform.transform(frame)
        return frame

    def _prove(self, booster: _Booster, frame: Any) -> Any:
        """model.predict's answer; the booster path kept if it answered the same, and the
        compiled one if, besides, its raw scores are LightGBM's to the bit."""
        expected = self.model.predict(frame)
        with self._lock:
            if self._proven or self._booster is None:  # another request proved it meanwhile
                return expected
            try:
                matrix = booster.matrix(self._transform(frame))
                same = _same(booster.answer(matrix), expected)
            except Exception:
                same = False
            if not same:
                self._state = "differs" if self._candidate is not None else self._state
                self._booster, self._candidate = None, None
                return expected
            self._proven = True
            if self._candidate is not None:
                self._compiled = self._prove_compiled(booster, self._candidate, matrix,
                                                      expected)
                self._candidate = None
                self._state = "in use" if self._compiled is not None else "differs"
        return expected

    @staticmethod
    def _prove_compiled(booster: _Booster, compiled: Predict, matrix: Any,
                        expected: Any) -> Predict | None:
        import numpy as np

        try:
            raw = compiled(matrix)
            same = bool(np.array_equal(raw, booster.raw(matrix))) and _same(
                booster.from_raw(raw, matrix), expected)
        except Exception:
            same = False
        return compiled if same else None
