"""Helpers shared by the train and evaluate stages."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd

PREPARED_DIR = Path("data/prepared")
MODEL_PATH = Path("models/model.pkl")


def load_split(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """Load data/prepared/<name>.csv as (features, labels)."""
    frame = pd.read_csv(PREPARED_DIR / f"{name}.csv")
    return frame.drop(columns="label"), frame["label"]


def set_seeds(seed: int) -> None:
    """Seed Python's and NumPy's global random generators."""
    random.seed(seed)
    np.random.seed(seed)
