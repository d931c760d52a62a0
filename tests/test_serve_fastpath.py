"""The server's fast prediction path gives exactly the model's own answers, or is not used:
the example's pickled Pipeline (Normalise + LGBMClassifier) on every test row, one row and all
rows at a time; LightGBM regressors and binary classifiers; and a model whose predict() does
something the booster does not know, which the first request's proof catches."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlbuild.serve.fastpath import Predictor


def test_the_examples_pipeline_answers_identically(built_example: Path) -> None:
    sys.path.insert(0, str(built_example))
    try:
        model = pickle.loads((built_example / "models/model.pkl").read_bytes())
        frame = pd.read_csv(built_example / "data/raw/test.csv")
    finally:
        sys.path.remove(str(built_example))
    predictor = Predictor(model)
    assert predictor.fast
    one_by_one = [predictor(frame.iloc[[i]])[0] for i in range(len(frame))]
    assert predictor.fast and predictor._proven  # the first row proved it; the rest used it
    expected = model.predict(frame)
    assert np.array_equal(np.asarray(one_by_one), expected)
    everything = predictor(frame)
    assert everything.dtype == expected.dtype and np.array_equal(everything, expected)
    shuffled = frame[list(reversed(frame.columns))]  # columns by name, not by position
    assert np.array_equal(predictor(shuffled), model.predict(frame))


def _data(seed: int = 0) -> tuple[pd.DataFrame, Any]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(300, 5)), columns=[f"f{i}" for i in range(5)])
    return frame, frame["f0"] + frame["f1"] * 2 + rng.normal(scale=0.1, size=300)


@pytest.mark.parametrize("kind", ["binary", "labels", "regressor"])
def test_lightgbm_models_answer_identically(kind: str) -> None:
    import lightgbm

    frame, target = _data()
    if kind == "regressor":
        model: Any = lightgbm.LGBMRegressor(n_estimators=20, verbose=-1).fit(frame, target)
    else:
        labels = np.where(target > 0, "yes", "no") if kind == "labels" else target > 0
        model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(frame, labels)
    predictor = Predictor(model)
    answers = [predictor(frame.iloc[[i]])[0] for i in range(40)]
    assert predictor._proven
    assert list(answers) == list(model.predict(frame.iloc[:40]))


class Shifted:
    """A model whose predict() adds one to its LightGBM estimator's answer."""

    def __init__(self, inner: Any) -> None:
        self.steps = [("model", inner)]
        self.inner = inner

    def predict(self, frame: Any) -> Any:
        return self.inner.predict(frame) + 1


def test_a_model_the_booster_does_not_describe_keeps_its_own_predict() -> None:
    import lightgbm

    frame, target = _data(1)
    model = Shifted(lightgbm.LGBMRegressor(n_estimators=10, verbose=-1).fit(frame, target))
    predictor = Predictor(model)
    assert predictor.fast  # it looks like a pipeline ending in LightGBM ...
    first = predictor(frame.iloc[[0]])
    assert not predictor.fast  # ... but the first request's proof found otherwise
    assert first[0] == model.predict(frame.iloc[[0]])[0]
    assert np.array_equal(predictor(frame), model.predict(frame))
    assert not Predictor(object()).fast  # not LightGBM at all: the model's own predict()
