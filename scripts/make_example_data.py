"""Build the offline Kaggle "Digit Recognizer"-style raw data from scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "raw"
HOLDOUT = 0.2
SEED = 0


def build_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (train, test): labelled rows and ~20% held-out unlabelled rows."""
    digits = load_digits()
    pixels = pd.DataFrame(digits.data.astype(np.int64), columns=[f"pixel{i}" for i in range(64)])
    frame = pd.concat([pd.Series(digits.target.astype(np.int64), name="label"), pixels], axis=1)
    order = np.random.default_rng(SEED).permutation(len(frame))
    n_test = round(len(frame) * HOLDOUT)
    test = frame.iloc[order[:n_test]].drop(columns="label").reset_index(drop=True)
    train = frame.iloc[order[n_test:]].reset_index(drop=True)
    return train, test


def main() -> None:
    """Write data/raw/train.csv and data/raw/test.csv."""
    RAW.mkdir(parents=True, exist_ok=True)
    train, test = build_frames()
    train.to_csv(RAW / "train.csv", index=False, lineterminator="\n")
    test.to_csv(RAW / "test.csv", index=False, lineterminator="\n")
    print(f"wrote {len(train)} train and {len(test)} test rows to {RAW.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
