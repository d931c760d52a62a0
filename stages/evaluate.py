"""Score the model on the validation split: metrics.json and a confusion-matrix plot.

What is scored is the artifact that is served: the pickled Pipeline, fed raw pixels. The
validation split is stored in prepare's units, so it is mapped back to raw pixels with the
inverse of prepare's own transform (stages.features.Normalise, with prepare's setting, not
the pipeline's copy); the mapping is exact (k/16 is exact in binary floating point and
round-trips through the CSV). A pipeline whose preprocessing disagreed with prepare's would
therefore show here as a drop in the metrics, instead of only in production.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score

from mlbuild import stage_params
from stages.common import MODEL_PATH, load_split
from stages.features import Normalise

METRICS_PATH = Path("metrics.json")
PLOT_PATH = Path("plots/confusion_matrix.png")


def main() -> None:
    """Write metrics.json (accuracy, macro_f1) and plots/confusion_matrix.png."""
    params = stage_params()
    cfg = params.evaluate
    model = pickle.loads(MODEL_PATH.read_bytes())
    prepared, labels = load_split("valid")
    raw = Normalise(params.prepare.normalise).inverse_transform(prepared)
    predicted = model.predict(raw)
    metrics = {
        "accuracy": round(float(accuracy_score(labels, predicted)), cfg.digits),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro")), cfg.digits),
    }
    METRICS_PATH.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")

    fig, ax = plt.subplots(figsize=(6, 6))
    ConfusionMatrixDisplay.from_predictions(labels, predicted, ax=ax, cmap=cfg.cmap, colorbar=False)
    ax.set_title("Confusion matrix (validation)")
    PLOT_PATH.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT_PATH, dpi=80, metadata={"Software": None})
    plt.close(fig)
    print(f"evaluate: {metrics}")


if __name__ == "__main__":
    main()
