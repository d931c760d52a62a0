"""A prediction log line is valid JSON even when a feature or a prediction is NaN or infinite
(a nullable column, a regressor's overflow): those values are null, the rest unchanged."""

from __future__ import annotations

import json

import numpy as np

from mlbuild.serve.predlog import Entry


def test_nan_and_infinity_are_null_in_the_log_line() -> None:
    values = np.array([[1.5, np.nan], [np.inf, 2.0]])
    entry = Entry(1.0, "r1", "model", "v0.0.1", "answered", ["a", "b"], values,
                  np.array([0.25, -np.inf]), 1.0)
    line = json.loads(entry.to_json())
    assert line["features"] == {"a": [1.5, None], "b": [None, 2.0]}
    assert line["predictions"] == [0.25, None]
    plain = Entry(1.0, "r2", "model", "v0.0.1", "answered", ["a"], np.array([[3]]),
                  np.array([7]), 1.0)
    assert json.loads(plain.to_json())["features"] == {"a": [3]}


def _strict(text: str) -> object:
    def refuse(token: str) -> object:
        raise ValueError(token)

    return json.loads(text, parse_constant=refuse)


def test_the_line_passes_a_parser_that_refuses_nan() -> None:
    entry = Entry(1.0, "r1", "model", "v0.0.1", "answered", ["a"], np.array([[np.nan]]),
                  np.array([np.nan]), 1.0)
    assert _strict(entry.to_json())["predictions"] == [None]  # type: ignore[index]
