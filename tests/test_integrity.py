"""Data integrity end to end: every pulled object verified, interrupted transfers repaired,
tracked data edits reported, DVC's config levels, gc listing (issues 8 and 9)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Project, _env
from tests.test_data import (
    MODEL,
    add_remote,
    clone,
    commit_all,
    corrupt,
    error,
    fingerprints,
    lock_md5,
    md5,
    obj,
    origin,
    outcomes,
    remote_of,
)

__all__ = ["origin"]  # the session-scoped pushed example, shared with test_data


def raw_entry(proj: Project, name: str = "train.csv") -> str:
    """md5 of one file of the .dvc-tracked raw data directory (read from its manifest)."""
    raw = yaml.safe_load(proj.read("data.dvc"))["outs"][0]["md5"]
    manifest = json.loads((proj.path / "dvc-storage/files/md5" / raw[:2] / raw[2:]).read_bytes())
    return str(next(e["md5"] for e in manifest if e["relpath"] == name))


def storage_object(proj: Project, md5sum: str) -> Path:
    """An object in the example's bundled remote."""
    return proj.path / "dvc-storage/files/md5" / md5sum[:2] / md5sum[2:]


def damage_remote_raw_data(proj: Project) -> str:
    """Corrupt train.csv on the remote, drop the local cache copy and the workspace data."""
    train = raw_entry(proj)
    corrupt(storage_object(proj, train))
    obj(proj, train).chmod(0o644)
    obj(proj, train).unlink()
    shutil.rmtree(proj.path / "data/raw")
    return train


# -- issue 8 item 1: every object that enters the cache is verified ---------------------------

def test_run_never_checks_out_data_pulled_damaged_from_the_remote(
        example_built: Project) -> None:
    lock_before = example_built.read("dvc.lock")
    train = damage_remote_raw_data(example_built)
    proc = example_built.run("run")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = error(proc)
    assert train in message and "data/raw/train.csv" in message
    assert not (example_built.path / "data/raw/train.csv").exists()
    assert not obj(example_built, train).exists()  # nothing corrupt kept in the cache
    assert example_built.read("dvc.lock") == lock_before
    assert example_built.run_json("data", "fsck")["corrupt"] == []


def test_run_says_that_it_pulls_missing_data(cold_build: tuple[Path, dict[str, Any]],
                                            example_built: Project) -> None:
    _, proc = cold_build  # `mlbuild run --json` in a fresh copy of the example
    assert proc["returncode"] == 0, proc["stderr"]
    assert "pulling 2 missing object(s) of data.dvc from remote 'storage'" in proc["stderr"]
    again = example_built.run("run")  # in a copy of that build
    assert "pulling" not in again.stderr


def test_run_pull_keeps_no_damaged_object_in_the_cache(
        origin: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    shutil.copytree(remote_of(origin), remote)
    model = lock_md5(origin, "train", MODEL)
    corrupt(remote / "files/md5" / model[:2] / model[2:])
    proj = clone(origin, tmp_path / "clone")
    assert proj.dvc("remote", "modify", "--local", "store", "url", str(remote)).returncode == 0
    proc = proj.run("run", "--pull", "--json")
    assert proc.returncode == 1
    report = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    assert report["train"]["outcome"] == "failed" and model in report["train"]["message"]
    assert not (proj.path / MODEL).exists()
    assert not obj(proj, model).exists()
    assert proj.run_json("data", "fsck")["corrupt"] == []


def test_verify_pull_never_builds_on_damaged_data(example_built: Project) -> None:
    train = raw_entry(example_built)
    corrupt(storage_object(example_built, train))
    example_built.git("add", "-A")
    example_built.git("commit", "-qm", "damaged remote copy")
    obj(example_built, train).chmod(0o644)
    obj(example_built, train).unlink()  # so the scratch build must pull it
    proc = example_built.run("verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert train in proc.stdout + proc.stderr
    assert "corrupted" in proc.stdout + proc.stderr


# -- issue 9 item 7: a re-pull after an interrupted pull succeeds the first time ---------------

def test_pull_after_an_interrupted_pull_succeeds_first_time(
        origin: Project, tmp_path: Path) -> None:
    proj = clone(origin, tmp_path / "clone")
    model = lock_md5(origin, "train", MODEL)
    partial = (remote_of(origin) / "files/md5" / model[:2] / model[2:]).read_bytes()[:1000]
    target = obj(proj, model)
    target.parent.mkdir(parents=True)
    target.write_bytes(partial)  # what a transfer killed while writing in place leaves
    target.chmod(0o444)  # DVC trusts a read-only object without rehashing it
    proc = proj.run("pull")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "1 damaged local cop(ies) replaced" in proc.stdout
    assert md5(obj(proj, model)) == model
    assert fingerprints(proj) == fingerprints(origin)


def test_pull_killed_midway_then_pulled_again(origin: Project, tmp_path: Path) -> None:
    proj = clone(origin, tmp_path / "clone")
    files = proj.path / ".dvc/cache/files"
    child = subprocess.Popen([sys.executable, "-m", "mlbuild", "pull"], cwd=proj.path,
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while child.poll() is None and not (files.is_dir() and any(files.rglob("*"))):
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait()
    proc = proj.run("pull")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert fingerprints(proj) == fingerprints(origin)


# -- issue 9 item 4: after push exits 0 the remote holds everything; data status asks it --------

def named_objects(proj: Project) -> set[str]:
    """Every object dvc.lock, the .dvc files and the run-cache name, with directory files."""
    named = {str(o["md5"]) for o in yaml.safe_load(proj.read("data.dvc"))["outs"]}
    for entry in yaml.safe_load(proj.read("dvc.lock"))["stages"].values():
        named |= {str(o["md5"]) for o in entry.get("outs", []) if o.get("md5")}
    for run in (proj.path / ".dvc/cache/runs").rglob("*"):
        if run.is_file():
            named |= {str(o["md5"]) for o in yaml.safe_load(run.read_text())["outs"]}
    for md5sum in [m for m in named if m.endswith(".dir")]:
        named |= {str(e["md5"]) for e in json.loads(obj(proj, md5sum).read_bytes())}
    return named


def on_remote(remote: Path) -> set[str]:
    files = remote / "files/md5"
    return {p.parent.name + p.name for p in files.rglob("*") if p.is_file()}


@pytest.fixture
def two_models(example_logreg: Project, tmp_path: Path) -> Project:
    """The built example with a second model in the run-cache, and an empty local remote."""
    assert outcomes(example_logreg)["train"] == "restored"  # logreg's build ran already
    add_remote(example_logreg, tmp_path / "remote")
    commit_all(example_logreg)
    return example_logreg


def test_push_sends_every_object_the_run_cache_names(two_models: Project,
                                                     tmp_path: Path) -> None:
    proc = two_models.run("push")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert named_objects(two_models) <= on_remote(tmp_path / "remote")
    proj = clone(two_models, tmp_path / "clone")
    proc = proj.run("run", "--pull", "model=logreg", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "fetching the run-cache from remote 'store'" in proc.stderr
    result = proj.outcomes(json.loads(proc.stdout))
    assert result["train"] == "restored", result  # the other model came from the remote


def test_data_status_and_push_see_a_file_missing_inside_a_pushed_directory(
        two_models: Project, tmp_path: Path) -> None:
    assert two_models.run("push").returncode == 0
    train = raw_entry(two_models)
    (tmp_path / "remote/files/md5" / train[:2] / train[2:]).unlink()  # the index still has it
    report = two_models.run_json("data", "status")
    assert report["in_sync"] is False
    assert report["paths"]["data/raw/train.csv"] == "new"  # type: ignore[index]
    proc = two_models.run("push")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert train in on_remote(tmp_path / "remote")
    assert two_models.run_json("data", "status")["in_sync"] is True
    assert "in sync" in two_models.dvc("status", "-c").stdout


def test_push_killed_midway_then_pushed_again_leaves_a_complete_remote(
        two_models: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    child = subprocess.Popen([sys.executable, "-m", "mlbuild", "push"], cwd=two_models.path,
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while child.poll() is None and not (remote.is_dir() and on_remote(remote)):
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait()
    proc = two_models.run("push")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert named_objects(two_models) <= on_remote(remote)
    assert two_models.run_json("data", "status")["in_sync"] is True
    proj = clone(two_models, tmp_path / "clone")
    pulled = proj.run("pull")
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert fingerprints(proj) == fingerprints(two_models)


def test_objects_a_killed_push_left_empty_on_the_remote_are_sent_again(
        two_models: Project, tmp_path: Path) -> None:
    """DVC tries a reflink at an object's final path first (create, clone, unlink on failure):
    a push killed in that instant leaves an empty object, and an empty .dir manifest made
    every later push fail with ObjectFormatError (seen once in a few dozen runs of the test
    above). The damaged objects are removed and sent again."""
    remote = tmp_path / "remote"
    assert two_models.run("push").returncode == 0
    raw = yaml.safe_load(two_models.read("data.dvc"))["outs"][0]["md5"]
    train = raw_entry(two_models)
    for md5sum in (raw, train):
        obj = remote / "files/md5" / md5sum[:2] / md5sum[2:]
        obj.chmod(0o644)
        obj.write_bytes(b"")
    proc = two_models.run("push")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for md5sum in (raw, train):
        data = (remote / "files/md5" / md5sum[:2] / md5sum[2:]).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5sum.removesuffix(".dir")
    proj = clone(two_models, tmp_path / "clone")
    assert proj.run("pull").returncode == 0
    assert fingerprints(proj) == fingerprints(two_models)


# -- issue 8 item 16: what people see -----------------------------------------------------------

def test_gc_verbose_lists_every_object_it_would_remove(example_logreg: Project) -> None:
    example_built = example_logreg  # built again with model=logreg: lightgbm's model unused
    plan = example_built.run_json("gc")
    paths = plan["paths"]
    assert isinstance(paths, list) and paths
    quiet = example_built.run("gc")
    assert "-v lists them" in quiet.stdout
    proc = example_built.run("gc", "-v")
    assert proc.returncode == 0, proc.stderr
    for path in paths:
        assert f"would remove: {path} (" in proc.stdout
    assert all(Path(p).exists() for p in paths)  # a dry run


def test_data_add_of_tracked_directory_updates_its_dvc_file(example_built: Project) -> None:
    (example_built.path / "data/raw/extra.csv").write_text("a,b\n1,2\n")
    proc = example_built.run("data", "add", "data/raw")
    assert proc.returncode == 0, proc.stderr
    assert "tracked: data.dvc" in proc.stdout  # as the README says
    assert not (example_built.path / "data/raw.dvc").exists()
    assert yaml.safe_load(example_built.read("data.dvc"))["outs"][0]["nfiles"] == 3
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "writes data/raw.dvc" not in readme


# -- issue 8 item 2: tracked data edited in place is reported as dvc status reports it ----------

def test_status_reports_tracked_data_no_stage_reads(example_built: Project) -> None:
    test_csv = example_built.path / "data/raw/test.csv"
    assert "data/raw/test.csv" not in example_built.read("dvc.yaml")  # no stage reads it
    test_csv.chmod(0o644)
    test_csv.write_text(test_csv.read_text() + test_csv.read_text().splitlines()[-1] + "\n")
    dvc = json.loads(example_built.dvc("status", "--json").stdout)
    assert dvc == {"data.dvc": [{"changed outs": {"data/raw": "modified"}}]}
    proc = example_built.run("status")
    assert proc.returncode == 0, proc.stderr
    assert "data.dvc:" in proc.stdout
    assert "modified: data/raw" in proc.stdout
    assert "mlbuild data add data/raw" in proc.stdout
    report = example_built.run_json("status")
    assert report["up_to_date"] is False
    assert report["data"] == [{"dvcfile": "data.dvc", "path": "data/raw", "change": "modified",
                               "files": ["data/raw/test.csv"]}]  # the file that changed
    assert example_built.run("data", "add", "data/raw").returncode == 0
    assert example_built.run_json("status")["data"] == []
    assert json.loads(example_built.dvc("status", "--json").stdout or "{}") == {}


# -- issue 8 item 13: every DVC config level, as DVC reads it -----------------------------------

PIPELINE = """\
stages:
  make:
    cmd: python -c "open('out.txt', 'w').write('made')"
    deps: [in.txt]
    outs: [out.txt]
"""


@pytest.mark.parametrize("variable", ["DVC_GLOBAL_CONFIG_DIR", "XDG_CONFIG_HOME"])
def test_global_cache_dir_and_remote_are_used_as_dvc_uses_them(tmp_path: Path,
                                                               variable: str) -> None:
    from tests.scenario import new_project

    proj = new_project(tmp_path / "proj", {"dvc.yaml": PIPELINE, "in.txt": "x\n"})
    glob = tmp_path / "xdg" / "dvc"
    glob.mkdir(parents=True)
    (glob / "config").write_text(  # a relative cache.dir is relative to the global config
        "[core]\n    remote = shared\n[cache]\n    dir = shared-cache\n"
        "['remote \"shared\"']\n" f"    url = {tmp_path / 'remote'}\n")
    env = {variable: str(glob if variable.startswith("DVC") else glob.parent)}
    proc = proj.run("run", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    made = md5(proj.path / "out.txt")
    assert (glob / "shared-cache/files/md5" / made[:2] / made[2:]).is_file()
    assert not (proj.path / ".dvc/cache/files").exists()
    dvc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=proj.path,
                         env=_env(env), capture_output=True, text=True)
    assert "up to date" in dvc.stdout, dvc.stdout + dvc.stderr
    pushed = proj.run("push", "-r", "shared", env=env)  # a globally configured remote is known
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert (tmp_path / "remote/files/md5" / made[:2] / made[2:]).is_file()
    assert proj.run("push", "-r", "shared").returncode == 2  # without the global config: unknown


def test_noop_run_imports_no_dvc(example_built: Project) -> None:
    assert example_built.run("run").returncode == 0  # the copy's stat cache settles
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlbuild", "run"],
                          cwd=example_built.path, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    heavy = {m for m in modules if m.split(".")[0] in (
        "dvc", "dvc_data", "hydra", "pandas", "rich", "configobj", "platformdirs", "packaging",
        "yaml", "omegaconf", "gto", "pydantic", "scmrepo")}
    assert not heavy, sorted(heavy)


def test_requirements_with_environment_markers_follow_packaging(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    from mlbuild.config import environment as envinfo

    info = tmp_path / "fakedist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakedist\nVersion: 1.0\n"
        "Requires-Dist: pyyaml>=6\n"
        'Requires-Dist: colorama; platform_system == "NoSuchSystem"\n'
        'Requires-Dist: pytest; extra=="test"\n'
        'Requires-Dist: ruff ; python_version < "3"\n'
        'Requires-Dist: mypy[reports] ; python_version >= "3"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert envinfo._requirements("fakedist") == ["pyyaml", "mypy"]
