"""Train the configured classifier (LightGBM or logistic regression) and pickle it with its
preprocessing: models/model.pkl is a scikit-learn Pipeline (prepare's Normalise, then the
classifier) that takes raw pixels, the input clients of the served model send.

The classifier is fitted on prepare's output, which is Normalise's output; Normalise is
stateless, so this is the fit Pipeline.fit would do on the raw rows, without undoing prepare.
"""

from __future__ import annotations

import pickle
from typing import Any

from sklearn.pipeline import Pipeline

from mlbuild import stage_params, stage_seed, stage_threads
from stages.common import MODEL_PATH, load_split, set_seeds
from stages.features import Normalise


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
    """Fit the classifier on data/prepared/train.csv; write the pipeline to models/model.pkl."""
    cfg = stage_params()
    seed = stage_seed()
    set_seeds(seed)
    features, labels = load_split("train")
    classifier = build_model(cfg.model, seed).fit(features, labels)
    model = Pipeline([("normalise", Normalise(cfg.prepare.normalise)),
                      ("classifier", classifier)])
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    MODEL_PATH.write_bytes(pickle.dumps(model, protocol=5))
    print(f"train: fitted {cfg.model.name} on {len(labels)} rows")


if __name__ == "__main__":
    main()
