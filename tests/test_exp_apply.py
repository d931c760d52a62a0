"""`mlbuild exp apply`: an experiment's params (into configs/ too), lock, metrics and outputs
become the workspace's without a rebuild; uncommitted changes in the way are refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.conftest import Project
from tests.errcheck import error_line
from tests.scenario import new_project
from tests.test_experiments import FILES, by_dvc, by_dvc_built, lr_sweep, lr_sweep_built

# session-wide projects with experiments, shared with test_experiments
__all__ = ["by_dvc", "by_dvc_built", "lr_sweep", "lr_sweep_built"]


def _commit(proj: Project, message: str) -> None:
    proj.git("add", "-A")
    proj.git("commit", "-qm", message)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _lock_md5(proj: Project, commit: str, stage: str, path: str) -> str:
    lock = proj.git("show", f"{commit}:dvc.lock").stdout
    outs = yaml.safe_load(lock)["stages"][stage]["outs"]
    return str(next(o["md5"] for o in outs if o["path"] == path))


def _variants(proj: Project, *args: str) -> list[dict[str, Any]]:
    """`mlbuild exp run ARGS --json`'s variants, all of which must have succeeded."""
    variants = cast(list[dict[str, Any]], proj.run_json("exp", "run", *args)["variants"])
    assert all(v["status"] == "ok" for v in variants), variants
    return variants


def _exp_commit(proj: Project, name: str) -> str:
    rows = json.loads(proj.run("exp", "show", "--json").stdout)
    rev = next(r["rev"] for r in rows if r["name"] == name)
    return proj.git("rev-parse", rev).stdout.strip()


def _assert_clean(proj: Project) -> None:
    """`mlbuild run` reruns nothing, and both `mlbuild status` and real `dvc status` agree."""
    report = proj.run_json("run")
    assert set(proj.outcomes(report).values()) == {"up-to-date"}, report
    status = proj.run_json("status")
    assert status["up_to_date"] is True, status
    dvc = proj.dvc("status", "--json")
    assert dvc.returncode == 0 and json.loads(dvc.stdout) == {}, dvc.stdout + dvc.stderr


@pytest.fixture
def committed(example_built: Project) -> Project:
    """The built example with its build committed: the baseline of the experiments."""
    _commit(example_built, "built")
    return example_built


def test_apply_makes_the_experiment_the_workspace_and_writes_configs(committed: Project
                                                                     ) -> None:
    proj = committed
    # one sweep over both models, each with its own keys (a key the other lacks is left out)
    variants = _variants(proj, "model=lightgbm,logreg", "model.learning_rate=0.2",
                         "model.n_estimators=30", "model.C=0.5", "-j", "2")
    overrides = sorted(sorted(v["overrides"]) for v in variants)
    assert overrides == [["model.C=0.5", "model=logreg"],
                         ["model.learning_rate=0.2", "model.n_estimators=30", "model=lightgbm"]]
    names = {("lin" if "model=logreg" in v["overrides"] else "fast"): v["name"]
             for v in variants}
    for alias in ("fast", "lin"):
        name = names[alias]
        commit = _exp_commit(proj, name)
        applied = proj.run("exp", "apply", name)
        assert applied.returncode == 0, applied.stderr
        assert f"applied experiment '{name}'" in applied.stdout
        for rel in ("params.yaml", "dvc.lock", "metrics.json"):
            assert proj.read(rel) == proj.git("show", f"{commit}:{rel}").stdout, rel
        model = proj.path / "models" / "model.pkl"
        assert _md5(model) == _lock_md5(proj, commit, "train", "models/model.pkl")
        _assert_clean(proj)
        assert proj.git("rev-parse", "refs/exps/exec/EXEC_APPLY").stdout.strip() == commit
        if alias == "fast":  # its params live in configs/ now, comments kept
            lightgbm = proj.read("configs/model/lightgbm.yaml")
            assert "learning_rate: 0.2\n" in lightgbm and "n_estimators: 30\n" in lightgbm
            assert lightgbm.startswith("# Gradient-boosted trees")
    # applying another experiment replaced the first one's edits: the linear model is chosen
    # and the trees' config is the baseline's again
    config = proj.read("configs/config.yaml")
    assert "  - model: logreg\n" in config and config.startswith("# Root Hydra config")
    assert "C: 0.5\n" in proj.read("configs/model/logreg.yaml")
    assert proj.git("status", "--porcelain", "configs/model/lightgbm.yaml").stdout == ""


def _snapshot(proj: Project) -> dict[str, str]:
    files = ["params.yaml", "dvc.lock", "metrics.json", "configs/config.yaml",
             "configs/model/lightgbm.yaml", "models/model.pkl"]
    return {rel: _md5(proj.path / rel) for rel in files} | {
        "git": proj.git("status", "--porcelain").stdout,
        "refs": proj.git("for-each-ref", "refs/exps/exec/").stdout}


def test_apply_refuses_uncommitted_changes_in_the_way_unless_forced(committed: Project
                                                                    ) -> None:
    proj = committed
    proc = proj.run("exp", "run", "model.learning_rate=0.2", "--name", "lr")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    error_line(proj.run("exp", "apply", "lr9"), 2, "no experiment named 'lr9'", "did you mean")

    # a config the experiment's params go into, edited by hand
    original = proj.read("configs/model/lightgbm.yaml")
    proj.write("configs/model/lightgbm.yaml", original.replace("learning_rate: 0.1",
                                                               "learning_rate: 0.3"))
    before = _snapshot(proj)
    error_line(proj.run("exp", "apply", "lr"), 2, "configs/model/lightgbm.yaml",
               "uncommitted changes would be overwritten", "--force")
    assert _snapshot(proj) == before
    proj.write("configs/model/lightgbm.yaml", original)

    # a model edited in place: its content is in no cache, apply would lose it
    model = proj.path / "models" / "model.pkl"
    model.chmod(0o644)
    model.write_bytes(b"hand-made model")
    before = _snapshot(proj)
    error_line(proj.run("exp", "apply", "lr"), 2, "models/model.pkl (not in the cache)")
    assert _snapshot(proj) == before

    # the experiment's model missing from the cache (not pulled): an error, nothing written
    md5 = _lock_md5(proj, _exp_commit(proj, "lr"), "train", "models/model.pkl")
    obj = proj.path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    aside = obj.rename(obj.with_name("aside"))
    missing = proj.run("exp", "apply", "lr", "--force")
    error_line(missing, 1, "not in the cache, nothing was applied", "models/model.pkl")
    assert _snapshot(proj) == before
    aside.rename(obj)

    # --force overwrites both kinds
    proj.write("configs/model/lightgbm.yaml", original.replace("num_leaves: 15",
                                                               "num_leaves: 7"))
    forced = proj.run("exp", "apply", "lr", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "num_leaves: 15\n" in proj.read("configs/model/lightgbm.yaml")
    assert "learning_rate: 0.2\n" in proj.read("configs/model/lightgbm.yaml")
    _assert_clean(proj)


def test_a_build_with_other_overrides_is_in_the_way_but_its_results_are_not_lost(
        committed: Project) -> None:
    proj = committed
    proc = proj.run("exp", "run", "model.n_estimators=30", "--name", "few")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proj.run("run", "model.num_leaves=7").returncode == 0
    before = _snapshot(proj)
    refused = proj.run("exp", "apply", "few")
    error_line(refused, 2, "uncommitted changes would be overwritten", "dvc.lock")
    assert _snapshot(proj) == before
    assert proj.run("exp", "apply", "few", "--force").returncode == 0
    assert "n_estimators: 30\n" in proj.read("configs/model/lightgbm.yaml")
    _assert_clean(proj)


def test_apply_of_an_experiment_made_by_dvc_writes_its_params_into_configs(
        by_dvc: Project) -> None:
    proj = by_dvc  # after `dvc exp run -S model.lr=0.5 -n by-dvc`
    proj.git("reset", "-q", "--hard")  # DVC built it in the workspace; start from HEAD
    assert proj.dvc("checkout", "-f").returncode == 0
    applied = proj.run("exp", "apply", "by-dvc")
    assert applied.returncode == 0, applied.stderr
    assert "lr: 0.5\n" in proj.read("configs/config.yaml")
    assert json.loads(proj.read("metrics.json"))["score"] == 6.0
    report = proj.run_json("run")
    assert set(proj.outcomes(report).values()) == {"up-to-date"}, report
    assert json.loads(proj.dvc("status", "--json").stdout) == {}


def _two_algos(tmp_path: Path) -> Project:
    """test_experiments' project, where only the slow algorithm has a depth."""
    files = {**FILES, "configs/algo/slow.yaml": "name: slow\nsteps: 3\ndepth: 1\n"}
    proj = new_project(tmp_path / "proj", files)
    proj.write("data/raw.txt", "1 2 3\n")
    assert proj.dvc("add", "-q", "data/raw.txt").returncode == 0
    assert proj.run("compile").returncode == 0
    _commit(proj, "pipeline")
    return proj


def test_a_key_of_one_group_choice_is_swept_only_where_it_exists(tmp_path: Path) -> None:
    proj = _two_algos(tmp_path)
    # 2 algorithms x 2 depths: the fast one has no depth, so it is one variant, not two
    variants = _variants(proj, "algo=fast,slow", "algo.depth=2,5")
    assert [v["overrides"] for v in variants] == [
        ["algo=fast"], ["algo=slow", "algo.depth=2"], ["algo=slow", "algo.depth=5"]]
    shown = json.loads(proj.run("exp", "show", "--json").stdout)
    assert sorted(str(r["params"].get("algo.depth")) for r in shown[1:]) == ["2", "5", "None"]
    # a key that no choice has is still a misspelling
    error_line(proj.run("exp", "run", "algo=fast,slow", "algo.dept=2,5"), 2,
               "algo.dept", "did you mean 'algo.depth'")
    error_line(proj.run("exp", "run", "--tune", "score", "algo=fast,slow",
                        "algo.dept=interval(1,9)"), 2, "algo.dept")
    # tuning: a trial of the fast algorithm leaves the depth out instead of failing
    trials = _variants(proj, "--tune", "score", "--trials", "3", "algo=fast,slow",
                       "algo.depth=interval(1,9)")
    for trial in trials:
        fast = "algo=fast" in trial["overrides"]
        assert fast == (not any(o.startswith("algo.depth=") for o in trial["overrides"]))


def test_exp_show_table_and_its_memo(lr_sweep: Project) -> None:
    proj = lr_sweep  # after `mlbuild exp run model.lr=0.1,0.3 --name lr`
    first = proj.run("exp", "show", "--json")
    assert first.returncode == 0, first.stderr
    memo = proj.path / ".dvc" / "tmp" / "mlbuild" / "exp-show.json"
    assert memo.is_file()
    assert proj.run("exp", "show", "--json").stdout == first.stdout  # answered from the memo
    memo.write_text('{"version": 1, "flat": {"yaml:0": 3}, "files": []}')  # a torn memo
    assert proj.run("exp", "show", "--json").stdout == first.stdout
    # the plain table: a header, the baseline set apart, the best experiment first
    lines = proj.run("exp", "show", "--sort-by", "score").stdout.splitlines()
    assert lines[0].split() == ["Experiment", "rev", "loss", "score", "model.lr"]
    assert lines[2].startswith("baseline ") and set(lines[3]) <= {"─", " "}
    assert lines[4].split()[0] == "lr-2" and lines[4].split()[3] == "3.6"


def test_write_back_keeps_comments_interpolations_and_group_entries(tmp_path: Path) -> None:
    from mlbuild.config.compose import compose
    from mlbuild.config.writeback import write_back

    proj = Project(tmp_path)
    proj.write("configs/config.yaml", """
        # the root
        defaults:
          - _self_
          - /model: small   # the model
        train:
          lr: 0.1           # the step
          warmup: ${train.lr}
        """)
    proj.write("configs/model/small.yaml", "width: 8\n")
    proj.write("configs/model/big.yaml", "width: 64\ndepth: 3\n")
    overrides = ["model=big", "model.depth=5", "train.lr=0.3", "+train.extra=[1, 2]"]
    target = compose(tmp_path, overrides)
    written = write_back(tmp_path, overrides, target)
    assert written == ["configs/config.yaml", "configs/model/big.yaml"]
    assert compose(tmp_path, []) == target
    config = proj.read("configs/config.yaml")
    assert "  - /model: big" in config and "# the model\n" in config
    assert "  lr: 0.3           # the step\n" in config
    assert "warmup: ${train.lr}" in config  # the interpolation stays one
    assert "depth: 5" in proj.read("configs/model/big.yaml")
    # without overrides (an experiment made by DVC), a value is set where it is defined
    changed = {**target, "train": {**target["train"], "warmup": 7}}
    assert write_back(tmp_path, [], changed) == ["configs/config.yaml"]
    assert compose(tmp_path, []) == changed and "  warmup: 7\n" in proj.read("configs/config.yaml")
