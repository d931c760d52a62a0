"""Train the configured classifier (LightGBM or logistic regression) and pickle it."""

from __future__ import annotations

import pickle
from typing import Any

from mlbuild import stage_params, stage_seed, stage_threads
from stages.common import MODEL_PATH, load_split, set_seeds


def build_model(model: Any, seed: int) -> Any:
    """Return an unfitted estimator for the ``model`` params group."""
    if model.name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            learning_rate=model.learning_rate,
            num_leaves=model.num_leaves,
            n_estimators=model.n_estimators,
            num_threads=stage_threads(),
            random_state=seed,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
    if model.name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=model.C, max_iter=model.max_iter, random_state=seed)
    raise ValueError(f"unknown model.name: {model.name!r}")


def main() -> None:
    """Fit the model on data/prepared/train.csv and write models/model.pkl."""
    cfg = stage_params()
    seed = stage_seed()
    set_seeds(seed)
    features, labels = load_split("train")
    model = build_model(cfg.model, seed).fit(features, labels)
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    MODEL_PATH.write_bytes(pickle.dumps(model, protocol=5))
    print(f"train: fitted {cfg.model.name} on {len(labels)} rows")


if __name__ == "__main__":
    main()
