"""The embedded example end to end: cold build, no-op, param change, helper edit, run-cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.conftest import Project, recorded_outcomes


def _md5(proj: Project, rel: str) -> str:
    return hashlib.md5((proj.path / rel).read_bytes()).hexdigest()


def test_cold_build_produces_model_metrics_and_plot(
        cold_build: tuple[Path, dict[str, Any]]) -> None:
    path, proc = cold_build  # `mlbuild run --json` in a fresh copy of the example
    assert proc["returncode"] == 0, proc["stderr"] + proc["stdout"]
    example = Project(path)
    assert example.outcomes(json.loads(proc["stdout"])) == {
        "prepare": "ran", "train": "ran", "evaluate": "ran"}
    assert (example.path / "models/model.pkl").stat().st_size > 1000
    assert (example.path / "plots/confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy" in example.read("metrics.json")
    # data/raw was pulled from the in-repository DVC remote
    assert (example.path / "data/raw/train.csv").is_file()


def test_noop_rebuild_runs_nothing_and_touches_nothing(example_built: Project) -> None:
    before = {p: (example_built.path / p).stat().st_mtime_ns
              for p in ("models/model.pkl", "metrics.json", "dvc.lock")}
    report = example_built.run_json("run")
    assert set(example_built.outcomes(report).values()) == {"up-to-date"}
    after = {p: (example_built.path / p).stat().st_mtime_ns for p in before}
    assert before == after
    text = example_built.run("run")
    assert text.returncode == 0
    assert "pipeline is up to date (3 stage(s)), nothing to do" in text.stdout


def test_param_change_rebuilds_only_affected_stages(example_built: Project) -> None:
    report = example_built.run_json("run", "model.learning_rate=0.05")
    assert example_built.outcomes(report) == {
        "prepare": "up-to-date", "train": "ran", "evaluate": "ran"}
    assert "learning_rate: 0.05" in example_built.read("params.yaml")


def test_helper_module_edit_rebuilds_only_importers(example_built: Project) -> None:
    common = example_built.path / "stages/common.py"
    common.write_text(common.read_text() + "\n# a harmless edit\n")
    report = example_built.run_json("run")
    assert example_built.outcomes(report) == {
        "prepare": "up-to-date", "train": "ran", "evaluate": "ran"}


def test_revert_is_restored_from_run_cache(built_example: Path,
                                           logreg_built: tuple[Path, dict[str, Any]],
                                           example_logreg: Project) -> None:
    original = _md5(Project(built_example), "models/model.pkl")
    # `mlbuild run model=logreg` in a copy of the built example (once per test run)
    assert recorded_outcomes(logreg_built[1])["train"] == "ran"
    assert _md5(example_logreg, "models/model.pkl") != original
    report = example_logreg.run_json("run")  # back to configs/ defaults
    assert example_logreg.outcomes(report) == {
        "prepare": "up-to-date", "train": "restored", "evaluate": "restored"}
    assert _md5(example_logreg, "models/model.pkl") == original


def test_rebuild_is_byte_identical(example_built: Project) -> None:
    files = ("models/model.pkl", "metrics.json", "plots/confusion_matrix.png", "dvc.lock")
    before = {f: _md5(example_built, f) for f in files}
    report = example_built.run_json("run", "--force")
    assert set(example_built.outcomes(report).values()) == {"ran"}
    assert {f: _md5(example_built, f) for f in files} == before


def test_dvc_agrees_after_mlbuild(example_built: Project) -> None:
    status = example_built.dvc("status")
    assert status.returncode == 0, status.stderr
    assert "up to date" in status.stdout
    repro = example_built.dvc("repro")
    assert repro.returncode == 0, repro.stderr
    assert "Running stage" not in repro.stdout


def test_mlbuild_agrees_after_dvc_repro(example: Project) -> None:
    example.run("compile")
    assert example.dvc("pull", "data.dvc").returncode == 0
    repro = example.dvc("repro")
    assert repro.returncode == 0, repro.stderr + repro.stdout
    assert "Running stage 'train'" in repro.stdout
    report = example.run_json("status")
    assert report["up_to_date"] is True, report
