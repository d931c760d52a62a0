"""`mlbuild exp`: sweeps built in isolated workspaces on the project's cache, stored as DVC
experiments that real DVC reads (and the other way round)."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Project, _env, locked, shared_dir
from tests.errcheck import error_line
from tests.scenario import new_project

FILES = {
    "configs/config.yaml": """
        defaults:
          - _self_
          - algo: fast
        prep:
          scale: 2
        model:
          lr: 0.1
          fail: false
          sleep: 0
        """,
    "configs/algo/fast.yaml": "name: fast\nsteps: 1\n",
    "configs/algo/slow.yaml": "name: slow\nsteps: 3\n",
    "stages/prep.yaml": """
        cmd: python stages/prep.py
        deps: [data/raw.txt]
        params: [prep]
        outs: [data/prep.txt]
        """,
    "stages/prep.py": """
        import mlbuild
        scale = mlbuild.stage_params().prep.scale
        rows = open("data/raw.txt").read().split()
        open("data/prep.txt", "w").write(" ".join(str(int(r) * scale) for r in rows))
        """,
    "stages/train.yaml": """
        cmd: python stages/train.py
        deps: [data/prep.txt]
        params: [model, algo]
        outs: [model.txt]
        metrics:
          - metrics.json:
              cache: false
        """,
    "stages/train.py": """
        import json, sys, time
        import mlbuild
        p = mlbuild.stage_params()
        if p.model.fail:
            sys.exit("diverged")
        time.sleep(p.model.sleep)
        total = sum(int(x) for x in open("data/prep.txt").read().split())
        score = round(total * p.model.lr * p.algo.steps, 6)
        open("model.txt", "w").write(f"{p.algo.name} {p.model.lr}")
        json.dump({"score": score, "loss": round(1 / score, 6)}, open("metrics.json", "w"))
        """,
}


@functools.cache
def _template() -> Path:
    """FILES with data/raw.txt tracked, compiled and committed, once per test process (each
    test copies it: the dvc add and compile cost more than a CPU-second)."""
    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-exp-template-"))
    atexit.register(shutil.rmtree, scratch, True)
    proj = new_project(scratch / "proj", FILES)
    proj.write("data/raw.txt", "1 2 3\n")
    assert proj.dvc("add", "-q", "data/raw.txt").returncode == 0
    proc = proj.run("compile")  # params.yaml and dvc.yaml, committed as a team would
    assert proc.returncode == 0, proc.stderr
    proj.git("add", "-A")
    proj.git("commit", "-qm", "pipeline")
    return proj.path


def _project(tmp_path: Path) -> Project:
    """A private copy of the committed experiments project, at tmp_path/proj."""
    shutil.copytree(_template(), tmp_path / "proj", symlinks=True)
    return Project(tmp_path / "proj")


def _shared_project(factory: pytest.TempPathFactory, name: str, made_by: str, *args: str
                    ) -> Path:
    """_project after one `mlbuild ARGS` (or `dvc ARGS`: *made_by*), done once per test run
    and shared by the xdist workers; the tests that start from it copy it."""
    root = shared_dir(factory) / f"exp-{name}"
    with locked(root.with_suffix(".lock")):
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)  # an attempt that failed
            root.mkdir()
            proj = _project(root)
            proc = proj.run(*args) if made_by == "mlbuild" else proj.dvc(*args)
            assert proc.returncode == 0, proc.stderr + proc.stdout
            (root / "done").touch()
    return root / "proj"


@pytest.fixture(scope="session")
def lr_sweep_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """_project after `mlbuild exp run model.lr=0.1,0.3 --name lr` (lr-1 and lr-2); do not
    modify it, copy it with lr_sweep."""
    return _shared_project(tmp_path_factory, "lr-sweep", "mlbuild",
                           "exp", "run", "model.lr=0.1,0.3", "--name", "lr")


@pytest.fixture
def lr_sweep(lr_sweep_built: Path, tmp_path: Path) -> Project:
    """A private copy of lr_sweep_built."""
    shutil.copytree(lr_sweep_built, tmp_path / "proj", symlinks=True)
    return Project(tmp_path / "proj")


@pytest.fixture(scope="session")
def by_dvc_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """_project after real DVC's `dvc exp run -S model.lr=0.5 -n by-dvc` (which builds in
    the workspace too); do not modify it, copy it with by_dvc."""
    return _shared_project(tmp_path_factory, "by-dvc", "dvc",
                           "exp", "run", "-S", "model.lr=0.5", "-n", "by-dvc")


@pytest.fixture
def by_dvc(by_dvc_built: Path, tmp_path: Path) -> Project:
    """A private copy of by_dvc_built."""
    shutil.copytree(by_dvc_built, tmp_path / "proj", symlinks=True)
    return Project(tmp_path / "proj")


def _private_tmp(tmp_path: Path) -> dict[str, str]:
    """A TMPDIR of the test's own: scratch workspaces go there, apart from other tests'."""
    (tmp_path / "tmp").mkdir()
    return {"TMPDIR": str(tmp_path / "tmp")}


def _scratch_dirs(env: dict[str, str]) -> set[str]:
    return {p.name for p in Path(env["TMPDIR"]).glob("mlbuild-exp-*")}


def _refs(proj: Project) -> list[str]:
    out = proj.git("for-each-ref", "--format=%(refname)", "refs/exps/").stdout
    return out.split()


def test_a_sweep_builds_every_variant_runs_prepare_once_and_leaves_the_workspace(
        tmp_path: Path) -> None:
    proj = _project(tmp_path)
    before = proj.git("status", "--porcelain").stdout
    tmp = _private_tmp(tmp_path)
    proc = proj.run("exp", "run", "model.lr=0.1,0.2", "algo=fast,slow", "-j", "2", "--json",
                    env=tmp)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    variants = report["variants"]
    assert isinstance(variants, list) and len(variants) == 4
    assert all(v["status"] == "ok" for v in variants), variants
    prep = [next(s["outcome"] for s in v["stages"] if s["stage"] == "prep") for v in variants]
    assert sorted(prep) == ["ran", "restored", "restored", "restored"], prep
    assert all(any(s["stage"] == "train" and s["outcome"] == "ran" for s in v["stages"])
               for v in variants)
    assert len(_refs(proj)) == 4
    # the user's workspace is untouched, and no scratch workspace is left behind
    assert proj.git("status", "--porcelain").stdout == before
    assert not (proj.path / "model.txt").exists()
    assert _scratch_dirs(tmp) == set()
    # one shared cache: the raw data, prep's output once, four models and four metrics files
    # (uncached outputs are kept for the run-cache, as DVC keeps them)
    objects = [p for p in (proj.path / ".dvc" / "cache" / "files" / "md5").rglob("*")
               if p.is_file()]
    assert len(objects) == 10, objects


def test_exp_show_table_sorted_with_the_baseline_first(lr_sweep: Project) -> None:
    proj = lr_sweep  # after `mlbuild exp run model.lr=0.1,0.3 --name lr`
    proc = proj.run("exp", "show", "--sort-by", "score", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0]["baseline"] is True
    assert [r["name"] for r in rows[1:]] == ["lr-2", "lr-1"]  # 0.3 scores higher
    assert rows[1]["params"]["model.lr"] == 0.3 and rows[1]["metrics"]["score"] == 3.6
    csv_out = proj.run("exp", "show", "--sort-by", "loss", "--ascending", "--csv").stdout
    lines = csv_out.splitlines()
    assert lines[0].startswith("Experiment,rev,loss,score,model.lr")
    assert lines[2].startswith("lr-2,")
    md = proj.run("exp", "show", "--md").stdout
    assert md.splitlines()[1].startswith("| --- |")
    # the history: the sweep, and each variant with its params, metrics and outputs
    sweep = json.loads(proj.run("log", "--command", "exp run", "--json").stdout)
    assert len(sweep) == 1 and sweep[0]["detail"]["experiments"] == ["lr-1", "lr-2"]
    runs = json.loads(proj.run("log", "--command", "exp variant", "--json").stdout)
    assert {r["parent"] for r in runs} == {sweep[0]["id"]}
    best = next(r for r in runs if r["detail"]["name"] == "lr-2")
    assert best["args"] == ["model.lr=0.3"] and best["status"] == "ok"
    assert best["detail"]["params"]["model"]["lr"] == 0.3
    assert best["detail"]["metrics"]["score"] == 3.6
    train = next(s for s in best["stages"] if s["stage"] == "train")
    assert train["outcome"] == "ran" and set(train["outputs"]) == {"model.txt", "metrics.json"}


def test_real_dvc_sees_mlbuild_experiments_and_applies_one(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    assert proj.run("exp", "run", "model.lr=0.25", "--name", "quarter").returncode == 0
    shown = proj.dvc("exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "quarter" in text and "0.25" in text and "metrics.json" in text
    applied = proj.dvc("exp", "apply", "quarter")
    assert applied.returncode == 0, applied.stderr
    assert "lr: 0.25" in proj.read("params.yaml")
    assert json.loads(proj.read("metrics.json"))["score"] == 3.0
    assert proj.read("model.txt") == "fast 0.25"  # checked out of the shared cache
    status = proj.dvc("status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout


def test_mlbuild_shows_experiments_made_by_dvc(by_dvc: Project) -> None:
    proj = by_dvc  # after `dvc exp run -S model.lr=0.5 -n by-dvc`
    rows = json.loads(proj.run("exp", "show", "--json").stdout)
    by_dvc = next(r for r in rows if r["name"] == "by-dvc")
    assert by_dvc["params"]["model.lr"] == 0.5 and by_dvc["metrics"]["score"] == 6.0


def test_a_failing_variant_is_reported_and_the_others_are_kept(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    tmp = _private_tmp(tmp_path)
    proc = proj.run("exp", "run", "model.fail=false,true", "--json", env=tmp)
    assert proc.returncode == 1, proc.stderr
    variants = json.loads(proc.stdout)["variants"]
    assert [v["status"] for v in variants] == ["ok", "failed"]
    assert "diverged" in variants[1]["error"]
    assert len(_refs(proj)) == 1  # no ref for the failed variant
    assert _scratch_dirs(tmp) == set()
    assert "did not finish" in proc.stderr


def test_plot_branch_remove(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    assert proj.run("exp", "run", "model.lr=0.1,0.2,0.3", "-n", "x").returncode == 0
    plotted = proj.run("exp", "plot", "score", "--out", "plots/sweep.png")
    assert plotted.returncode == 0, plotted.stderr
    assert "score against model.lr" in plotted.stdout
    png = (proj.path / "plots" / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    error_line(proj.run("exp", "plot", "scroe"), 2, "no metric 'scroe'", "did you mean")
    assert proj.run("exp", "branch", "x-3", "best-lr").returncode == 0
    assert "lr: 0.3" in proj.git("show", "best-lr:params.yaml").stdout
    error_line(proj.run("exp", "branch", "x-3", "best-lr"), 2, "already exists")
    assert proj.run("exp", "remove", "x-2").returncode == 0
    assert len(_refs(proj)) == 2
    bad = proj.run("exp", "remove", "x-9")
    assert bad.returncode == 2 and "no experiment named 'x-9'" in bad.stderr
    assert proj.run("exp", "remove", "--all").returncode == 0
    assert _refs(proj) == []


def test_bad_sweeps_are_refused_before_anything_runs(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    for args, words in [
        (["model.lrr=0.1,0.2"], "model.lrr"),
        (["model.lr=range(1,)"], "range(1,)"),
        (["model.lr=interval(0,1)"], "--tune"),
        (["algo=glob(nothing*)"], "no values"),
        (["model.lr=range(5,1)"], "no values"),
        (["model.lr=0.1", "--name", "a/b"], "invalid experiment name"),
    ]:
        proc = proj.run("exp", "run", *args)
        error_line(proc, 2, words)
    assert _refs(proj) == []
    assert not (proj.path / ".dvc" / "cache" / "runs").exists()


def test_ctrl_c_stops_every_variant_and_removes_their_workspaces(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    tmp = _private_tmp(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "mlbuild", "exp", "run", "model.sleep=30",
                             "model.lr=0.1,0.2", "-j", "2"], cwd=proj.path, env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_scratch_dirs(tmp)) < 2:
        time.sleep(0.2)
    time.sleep(3)  # both builds are inside the slow stage now
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _refs(proj) == []
    assert _scratch_dirs(tmp) == set()


def test_tune_searches_with_a_seeded_sampler_and_saves_every_trial(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    assert proj.run("run").returncode == 0  # the baseline commit carries metrics.json
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    args = ["exp", "run", "--tune", "score", "--trials", "4", "-j", "2",
            "model.lr=interval(0.05,0.5)", "algo=fast,slow", "--json"]
    first = proj.run(*args)
    assert first.returncode == 0, first.stderr
    trials = json.loads(first.stdout)["variants"]
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials)
    for trial in trials:
        lr = float(next(o for o in trial["overrides"] if o.startswith("model.lr="))[9:])
        assert 0.05 <= lr <= 0.5
        steps = 3 if "algo=slow" in trial["overrides"] else 1
        assert trial["metrics"]["score"] == round(12 * lr * steps, 6)
    assert len(_refs(proj)) == 4
    again = json.loads(proj.run(*args).stdout)["variants"]
    assert [t["overrides"] for t in again] == [t["overrides"] for t in trials]  # seeded


def test_tune_refuses_a_metric_no_stage_writes_and_an_empty_space(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    assert proj.run("run").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    bad = proj.run("exp", "run", "--tune", "scroe", "model.lr=interval(0.1,0.2)")
    error_line(bad, 2, "no stage writes a metric 'scroe'", "did you mean 'score'")
    empty = proj.run("exp", "run", "--tune", "score", "model.lr=0.1")
    error_line(empty, 2, "--tune needs a search space")
    direction = proj.run("exp", "run", "--tune", "score", "--direction", "up", "model.lr=0.1,0.2")
    assert direction.returncode == 2 and "'up' is not one of" in direction.stderr
    assert _refs(proj) == []


def test_push_and_pull_share_experiments_with_their_outputs(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    proj.git("remote", "add", "origin", str(origin))
    assert proj.dvc("remote", "add", "-d", "store", str(tmp_path / "store")).returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "remotes")
    proj.git("push", "-q", "origin", "HEAD:main")
    error_line(proj.run("exp", "push", "origin"), 2, "no experiments to push")
    assert proj.run("exp", "run", "model.lr=0.25", "--name", "shared").returncode == 0
    pushed = proj.run("exp", "push", "origin")
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed 1 experiment(s)" in pushed.stdout
    remote_refs = subprocess.run(["git", "ls-remote", str(origin), "refs/exps/*"],
                                 capture_output=True, text=True, check=True).stdout
    assert remote_refs.rstrip().endswith("/shared")

    other = Project(tmp_path / "other")
    subprocess.run(["git", "clone", "-q", "-b", "main", str(origin), str(other.path)],
                   check=True)
    error_line(other.run("exp", "pull", "upstream"), 2, "no git remote named 'upstream'")
    pulled = other.run("exp", "pull", "origin")
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled 1 experiment(s) (shared)" in pulled.stdout
    rows = json.loads(other.run("exp", "show", "--json").stdout)
    assert [r["metrics"]["score"] for r in rows if r["name"] == "shared"] == [3.0]
    applied = other.dvc("exp", "apply", "shared")  # the model comes out of the pulled cache
    assert applied.returncode == 0, applied.stderr
    assert other.read("model.txt") == "fast 0.25"
