"""Drift verdicts against Evidently itself: the same samples, in every regime of Evidently's
default method choice (small and large reference; numeric with many or few values, binary and
categorical columns; drifted and not), must get the same method, score and verdict.

Evidently runs in its own environment (.venv-evidently, made by scripts/test.sh), because it
does not import under pandas 3."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlbuild.monitor.drift import ColumnRule, DriftSettings, column_drift, dataset_drift

HERE = Path(__file__).resolve().parent
EVIDENTLY_METHODS = {"K-S p_value": "ks", "chi-square p_value": "chisquare",
                     "Z-test p_value": "z", "Wasserstein distance (normed)": "wasserstein",
                     "Jensen-Shannon distance": "jensenshannon"}
KINDS = {"num_same": "numerical", "num_shift": "numerical", "few_same": "numerical",
         "few_shift": "numerical", "flag_same": "categorical", "flag_shift": "categorical",
         "city_same": "categorical", "city_shift": "categorical", "constant": "numerical"}


def _evidently_python() -> str:
    python = os.environ.get("MLBUILD_EVIDENTLY_PYTHON") or str(
        HERE.parent / ".venv-evidently" / "bin" / "python")
    if not Path(python).exists():
        pytest.fail(f"no Evidently environment at {python}: run scripts/test.sh, which makes it")
    return python


def _sample(rng: np.random.Generator, rows: int, shifted: bool) -> pd.DataFrame:
    cities = ["oslo", "paris", "rome", "lima"]
    return pd.DataFrame({
        "num_same": rng.normal(0, 1, rows),
        "num_shift": rng.normal(0.6 if shifted else 0, 1, rows),
        "few_same": rng.integers(0, 4, rows),
        "few_shift": rng.choice(4, rows, p=[0.55, 0.15, 0.15, 0.15] if shifted else None),
        "flag_same": rng.choice(["yes", "no"], rows),
        "flag_shift": rng.choice(["yes", "no"], rows, p=[0.8, 0.2] if shifted else None),
        "city_same": rng.choice(cities, rows),
        "city_shift": rng.choice(cities, rows, p=[0.7, 0.1, 0.1, 0.1] if shifted else None),
        "constant": np.full(rows, 3.0),
    })


def _datasets(folder: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    rng = np.random.default_rng(7)
    sizes = {"small": (600, 300), "large": (2500, 700)}
    out = {}
    for name, (ref_rows, cur_rows) in sizes.items():
        _sample(rng, ref_rows, False).to_csv(folder / f"{name}.ref.csv", index=False)
        _sample(rng, cur_rows, True).to_csv(folder / f"{name}.cur.csv", index=False)
        out[name] = (pd.read_csv(folder / f"{name}.ref.csv"),
                     pd.read_csv(folder / f"{name}.cur.csv"))
    (folder / "kinds.json").write_text(json.dumps(KINDS))
    return out


def test_verdicts_match_evidentlys_on_the_same_samples(tmp_path: Path) -> None:
    datasets = _datasets(tmp_path)
    proc = subprocess.run([_evidently_python(), str(HERE / "evidently_verdicts.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    methods = set()
    for name, (ref, cur) in datasets.items():
        ours = dataset_drift(ref.astype({c: object for c, k in KINDS.items()
                                         if k == "categorical"}), cur)
        for verdict in ours.columns:
            expected = theirs[name]["columns"][verdict.column]
            where = f"{name}/{verdict.column}"
            assert verdict.method == EVIDENTLY_METHODS[expected["method"]], where
            assert verdict.threshold == expected["threshold"], where
            assert verdict.score == pytest.approx(expected["score"], rel=1e-6, abs=1e-12), where
            methods.add(verdict.method)
        assert ours.share == pytest.approx(theirs[name]["share"]), name
    assert methods == {"ks", "chisquare", "z", "wasserstein", "jensenshannon"}


def test_a_shift_is_found_and_named_and_the_same_data_is_not() -> None:
    rng = np.random.default_rng(1)
    ref, cur = _sample(rng, 600, False), _sample(rng, 300, True)
    verdict = {c.column: c for c in dataset_drift(ref, cur).columns}
    assert verdict["num_shift"].drifted and verdict["city_shift"].drifted
    assert not verdict["num_same"].drifted and not verdict["constant"].drifted
    assert verdict["num_shift"].psi > verdict["num_same"].psi
    same = dataset_drift(ref, _sample(rng, 300, False))
    assert not same.drifted and same.share < 0.5


def test_settings_choose_the_method_threshold_and_share() -> None:
    rng = np.random.default_rng(2)
    ref, cur = _sample(rng, 600, False), _sample(rng, 300, True)
    psi = column_drift("num_shift", ref["num_shift"], cur["num_shift"],
                       ColumnRule("psi", 10.0))
    assert psi.method == "psi" and psi.threshold == 10.0 and not psi.drifted
    settings = DriftSettings(method="wasserstein", share=0.1,
                             columns={"city_same": ColumnRule("jensenshannon")})
    verdict = dataset_drift(ref[["num_shift", "city_same"]], cur[["num_shift", "city_same"]],
                            settings)
    assert [c.method for c in verdict.columns] == ["wasserstein", "jensenshannon"]
    assert verdict.drifted and verdict.threshold_share == 0.1
    with pytest.raises(ValueError, match="needs numbers"):
        column_drift("city_same", ref["city_same"], cur["city_same"], ColumnRule("ks"))
