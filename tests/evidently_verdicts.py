"""Run by tests/test_monitor_drift.py under the Evidently environment (.venv-evidently, made by
scripts/test.sh: Evidently does not import under pandas 3). Reads the datasets a test wrote and
prints Evidently's own per-column method, score and threshold and its drifted share, as JSON.

Usage: python evidently_verdicts.py DIR  (DIR holds NAME.ref.csv, NAME.cur.csv, kinds.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def verdicts(folder: Path, name: str, kinds: dict[str, str]) -> dict[str, object]:
    """Evidently's DataDriftPreset on one reference/current pair."""
    ref = pd.read_csv(folder / f"{name}.ref.csv")
    cur = pd.read_csv(folder / f"{name}.cur.csv")
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"])
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, definition),
                                               Dataset.from_pandas(ref, definition))
    out: dict[str, object] = {"columns": {}}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if "column" in config:
            out["columns"][config["column"]] = {  # type: ignore[index]
                "method": config["method"], "threshold": config["threshold"],
                "score": metric["value"]}
        elif "drift_share" in config:
            out["share"] = metric["value"]["share"]
    return out


def main() -> None:
    """Print {dataset: verdicts} for every dataset in the folder."""
    folder = Path(sys.argv[1])
    kinds = json.loads((folder / "kinds.json").read_text())
    names = sorted(p.name.split(".")[0] for p in folder.glob("*.ref.csv"))
    print(json.dumps({name: verdicts(folder, name, kinds) for name in names}))


if __name__ == "__main__":
    main()
