"""The example's model artifact carries its preprocessing: it takes the raw pixels clients send."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import Project, _env

# Runs in the built example (its own `stages` package first on sys.path, as a server has it).
PROBE = """
import json, pickle, warnings
import numpy as np, pandas as pd
from stages.features import Normalise
from stages.schemas import PIXEL_COLUMNS, raw_features_schema, raw_schema

warnings.simplefilter("error")  # a feature-name or dtype warning is a failure too
model = pickle.load(open("models/model.pkl", "rb"))
test = pd.read_csv("data/raw/test.csv")
train = pd.read_csv("data/raw/train.csv")
prepared = pd.concat([pd.read_csv(f"data/prepared/{n}.csv") for n in ("train", "valid")])
transform = Normalise()
classifier = model[-1]

def rows(frame):
    return sorted(map(tuple, frame[PIXEL_COLUMNS].to_numpy().tolist()))

rng = np.random.default_rng(0)
edges = {
    "zeros": pd.DataFrame(0, index=range(3), columns=PIXEL_COLUMNS),
    "sixteens": pd.DataFrame(16, index=range(3), columns=PIXEL_COLUMNS),
    "random_int64": pd.DataFrame(rng.integers(0, 17, (50, 64)), columns=PIXEL_COLUMNS),
    "random_fp32": pd.DataFrame(rng.integers(0, 17, (50, 64)), columns=PIXEL_COLUMNS
                                ).astype("float32"),
    "one_row": test.head(1),
}
contract = raw_features_schema()
assert contract.columns.keys() == raw_schema().remove_columns(["label"]).columns.keys()
print(json.dumps({
    "steps": [type(step).__name__ for _, step in model.steps],
    "served": model.predict(test).tolist(),
    "classifier_on_transformed": classifier.predict(transform.transform(test)).tolist(),
    "classifier_on_raw": classifier.predict(test).tolist(),
    "prepare_used_the_transform": rows(transform.transform(train)) == rows(prepared),
    "raw_train_accuracy": float((model.predict(train[PIXEL_COLUMNS]) == train["label"]).mean()),
    "edges": {k: sorted(set(model.predict(v).tolist())) for k, v in edges.items()},
    "contract_rows": len(contract.validate(test)),
}))
"""


def _probe(path: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBE)], cwd=path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_pickled_model_takes_raw_pixels(built_example: Path) -> None:
    probe = _probe(built_example)
    assert probe["steps"] == ["Normalise", "LGBMClassifier"]
    assert probe["prepare_used_the_transform"] is True  # the transform is prepare's own
    assert len(probe["served"]) == 359
    # raw rows through the pickled model == the classifier on prepare's transform of them
    assert probe["served"] == probe["classifier_on_transformed"]
    # ... and the transform matters: the bare classifier on raw rows answers differently
    assert probe["served"] != probe["classifier_on_raw"]
    # raw, labelled rows as a client would send them are classified correctly
    assert probe["raw_train_accuracy"] > 0.95


def test_pipeline_accepts_the_whole_raw_contract(built_example: Path) -> None:
    probe = _probe(built_example)
    # the serving contract (raw_schema minus the label) admits the Kaggle-style test set
    assert probe["contract_rows"] == 359
    # the extremes and integer or FP32 frames of the contract: predicted, without warnings
    assert set(probe["edges"]) == {"zeros", "sixteens", "random_int64", "random_fp32",
                                   "one_row"}
    for labels in probe["edges"].values():
        assert labels and set(labels) <= set(range(10))


def test_serving_block_names_the_raw_contract(built_example: Path) -> None:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load((built_example / "mlbuild.yaml").read_text())
    assert doc["serving"]["model"] == {"input": "stages.schemas:raw_schema", "drop": ["label"]}
    artifacts = YAML(typ="safe").load((built_example / "dvc.yaml").read_text())["artifacts"]
    assert "model" in artifacts


def test_evaluate_scores_the_served_pipeline(example_built: Project) -> None:
    good = json.loads(example_built.read("metrics.json"))["accuracy"]
    assert good > 0.95
    # a pipeline whose preprocessing disagrees with prepare's: the classifier alone would
    # still score well on prepare's output, the served model must not
    train = example_built.path / "stages/train.py"
    train.write_text(train.read_text().replace("Normalise(cfg.prepare.normalise)",
                                               "Normalise(not cfg.prepare.normalise)"))
    report = example_built.run_json("run")
    assert example_built.outcomes(report) == {
        "prepare": "up-to-date", "train": "ran", "evaluate": "ran"}
    assert json.loads(example_built.read("metrics.json"))["accuracy"] < good - 0.1
