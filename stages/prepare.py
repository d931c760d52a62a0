"""Validate the raw digits, split them stratified into train/valid and normalise pixels.

The normalisation is stages.features.Normalise, the same object train puts in front of the
classifier in the pickled model, so the served model takes raw pixels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from mlbuild import stage_params
from stages.features import Normalise
from stages.schemas import PIXEL_COLUMNS, prepared_schema, raw_schema

RAW_TRAIN = Path("data/raw/train.csv")
OUT_DIR = Path("data/prepared")


def main() -> None:
    """Write data/prepared/train.csv and data/prepared/valid.csv."""
    cfg = stage_params().prepare
    raw = raw_schema().validate(pd.read_csv(RAW_TRAIN))
    frame = raw.astype(dict.fromkeys(PIXEL_COLUMNS, float))
    frame[PIXEL_COLUMNS] = Normalise(cfg.normalise).transform(raw[PIXEL_COLUMNS])
    train, valid = train_test_split(
        frame, test_size=cfg.test_size, random_state=cfg.seed, stratify=frame["label"]
    )
    schema = prepared_schema(cfg.normalise)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("valid", valid)):
        schema.validate(part).to_csv(OUT_DIR / f"{name}.csv", index=False, lineterminator="\n")
    print(f"prepare: {len(train)} train rows, {len(valid)} valid rows")


if __name__ == "__main__":
    main()
