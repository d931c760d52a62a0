"""pandera schemas for the raw and prepared digits tables."""

from __future__ import annotations

import pandera.pandas as pa

N_PIXELS = 64
PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]
LABEL = pa.Column(int, pa.Check.in_range(0, 9), nullable=False)


def raw_schema() -> pa.DataFrameSchema:
    """Schema of data/raw/train.csv: integer label 0..9 and integer pixels 0..16."""
    pixel = pa.Column(int, pa.Check.in_range(0, 16), nullable=False)
    columns = {"label": LABEL, **dict.fromkeys(PIXEL_COLUMNS, pixel)}
    return pa.DataFrameSchema(columns, strict=True, ordered=True)


def raw_features_schema() -> pa.DataFrameSchema:
    """Schema of data/raw/test.csv and of what clients send the served model: raw_schema's
    pixels without the label."""
    return raw_schema().remove_columns(["label"])


def prepared_schema(normalised: bool) -> pa.DataFrameSchema:
    """Schema of a prepared split: float pixels in [0, 1] if normalised, else [0, 16]."""
    pixel = pa.Column(float, pa.Check.in_range(0.0, 1.0 if normalised else 16.0), nullable=False)
    columns = {"label": LABEL, **dict.fromkeys(PIXEL_COLUMNS, pixel)}
    return pa.DataFrameSchema(columns, strict=True, ordered=True)


def prepared_contract() -> pa.DataFrameSchema:
    """The contract of data/prepared/*.csv, whatever the normalise setting: pixels in [0, 16]."""
    return prepared_schema(normalised=False)
