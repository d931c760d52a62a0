"""Data versioning end to end: push, clone, pull, integrity of the cache and remote, gc, add."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project, copy_tree, locked, shared_dir

OUTPUTS = ("data/prepared/train.csv", "data/prepared/valid.csv", "models/model.pkl",
           "metrics.json", "plots/confusion_matrix.png")
MODEL = "models/model.pkl"


# -- helpers -----------------------------------------------------------------------------------

def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fingerprints(proj: Project) -> dict[str, str]:
    """md5 of every output and of dvc.lock."""
    return {rel: md5(proj.path / rel) for rel in (*OUTPUTS, "dvc.lock")}


def lock_md5(proj: Project, stage: str, path: str) -> str:
    """The md5 dvc.lock records for one output of a stage."""
    lock = yaml.safe_load(proj.read("dvc.lock"))
    return next(str(o["md5"]) for o in lock["stages"][stage]["outs"] if o["path"] == path)


def obj(proj: Project, md5sum: str) -> Path:
    """The cache object with this hash."""
    return proj.path / ".dvc/cache/files/md5" / md5sum[:2] / md5sum[2:]


def cache_files(proj: Project) -> set[str]:
    """Every file under .dvc/cache (objects and run-cache entries)."""
    top = proj.path / ".dvc/cache"
    return {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()}


def corrupt(path: Path, keep_mtime: bool = False) -> None:
    """Flip one byte of a (read-only) cache object, optionally hiding it from mtime checks."""
    st = path.stat()
    path.chmod(0o644)
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF
    path.write_bytes(bytes(body))
    if keep_mtime:  # bit rot, or a tool that restores times: only the content tells
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.chmod(0o444)


def add_remote(proj: Project, url: Path) -> None:
    proc = proj.dvc("remote", "add", "-f", "-d", "store", str(url))
    assert proc.returncode == 0, proc.stderr


def commit_all(proj: Project) -> None:
    """Commit the project the way a user would: tracked data and caches stay out of git."""
    ignored = proj.path / "data/.gitignore"
    lines = ignored.read_text().splitlines() if ignored.exists() else []
    ignored.write_text("\n".join(dict.fromkeys([*lines, "/raw"])) + "\n")
    (proj.path / ".gitignore").write_text("__pycache__/\n")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    tracked = proj.git("ls-files").stdout.split()
    assert not any(t.startswith(("data/raw/", "data/prepared/", "models/")) and
                   not t.endswith(".gitignore") for t in tracked), tracked


def clone(origin: Project, dest: Path) -> Project:
    subprocess.run(["git", "clone", "-q", str(origin.path), str(dest)], check=True)
    return Project(dest)


def outcomes(proj: Project, *args: str) -> dict[str, str]:
    return proj.outcomes(proj.run_json("run", *args))


def error(proc: subprocess.CompletedProcess[str]) -> str:
    """The one-line error a failing command printed."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mlbuild: error:")]
    assert lines, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    return lines[-1]


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def origin(built_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The built example with a local default remote, pushed and committed (do not modify)."""
    base = tmp_path_factory.mktemp("origin")
    proj = Project(base / "origin")
    copy_tree(built_example, proj.path)
    add_remote(proj, base / "remote")
    proc = proj.run("push")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    commit_all(proj)
    return proj


def remote_of(origin: Project) -> Path:
    return origin.path.parent / "remote"


@pytest.fixture
def pulled(origin: Project, tmp_path: Path) -> Project:
    """A clone of origin after `mlbuild pull`."""
    proj = clone(origin, tmp_path / "clone")
    proc = proj.run("pull")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proj


# -- push, clone, pull -------------------------------------------------------------------------

def test_push_clone_pull_reproduces_the_build_without_running(
        origin: Project, tmp_path: Path) -> None:
    proj = clone(origin, tmp_path / "clone")
    assert not (proj.path / MODEL).exists()
    proc = proj.run("pull")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "every needed object verified" in proc.stdout
    assert "2 contract(s) checked" in proc.stdout  # mlbuild.yaml's contracts on the raw data
    assert set(outcomes(proj).values()) == {"up-to-date"}
    assert fingerprints(proj) == fingerprints(origin)
    assert "up to date" in proj.dvc("status").stdout
    assert proj.run_json("data", "status")["in_sync"] is True
    assert proj.git("status", "--porcelain").stdout == ""


def test_run_pull_in_fresh_clone_restores_instead_of_running(
        origin: Project, tmp_path: Path) -> None:
    proj = clone(origin, tmp_path / "clone")
    result = outcomes(proj, "--pull")
    assert "ran" not in result.values(), result
    assert set(result.values()) <= {"restored", "up-to-date"}
    assert fingerprints(proj) == fingerprints(origin)
    assert set(outcomes(proj).values()) == {"up-to-date"}


def test_data_status_names_what_is_not_pushed(example_built: Project, tmp_path: Path) -> None:
    add_remote(example_built, tmp_path / "empty-remote")
    report = example_built.run_json("data", "status")
    assert report["in_sync"] is False
    assert report["paths"][MODEL] == "new"  # type: ignore[index]
    assert example_built.run("push").returncode == 0
    assert example_built.run_json("data", "status")["in_sync"] is True


def test_unknown_remote_is_bad_input(example_built: Project) -> None:
    proc = example_built.run("pull", "-r", "nosuchremote")
    assert proc.returncode == 2, proc.stderr
    assert "nosuchremote" in error(proc)


# -- corrupted objects -------------------------------------------------------------------------

def test_fsck_reports_and_repair_removes_a_corrupted_object(example_built: Project) -> None:
    model = lock_md5(example_built, "train", MODEL)
    corrupt(obj(example_built, model))
    proc = example_built.run("data", "fsck")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert str(obj(example_built, model)) in proc.stdout and model in proc.stdout
    report = json.loads(example_built.run("data", "fsck", "--json").stdout)
    assert [c["expected"] for c in report["corrupt"]] == [model]
    proc = example_built.run("data", "fsck", "--repair")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not obj(example_built, model).exists()
    assert example_built.run_json("data", "fsck")["corrupt"] == []
    assert md5(example_built.path / MODEL) == model  # the workspace copy was never touched


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["written", "mtime-preserved"])
def test_run_cache_restore_never_checks_out_a_corrupted_object(
        built_example: Path, example_logreg: Project, keep_mtime: bool) -> None:
    # a copy of the built example built again with model=logreg (train ran there)
    original = lock_md5(Project(built_example), "train", MODEL)
    assert outcomes(example_logreg)["train"] == "restored"  # the verifier has seen the object
    assert outcomes(example_logreg, "model=logreg")["train"] == "restored"
    logreg = md5(example_logreg.path / MODEL)
    lock_before = example_logreg.read("dvc.lock")
    corrupt(obj(example_logreg, original), keep_mtime)

    proc = example_logreg.run("run", "--json")  # back to lightgbm: the run-cache has it
    assert proc.returncode == 1, proc.stdout
    report = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    assert report["train"]["outcome"] == "failed"
    assert original in report["train"]["message"]
    assert str(obj(example_logreg, original)) in report["train"]["message"]
    assert report["evaluate"]["outcome"] != "ran"
    assert md5(example_logreg.path / MODEL) == logreg  # not replaced by the corrupt bytes
    assert example_logreg.read("dvc.lock") == lock_before

    assert example_logreg.run("data", "fsck", "--repair").returncode == 0
    assert outcomes(example_logreg)["train"] == "ran"  # rebuilt, since the object is gone
    assert md5(example_logreg.path / MODEL) == original
    assert example_logreg.run_json("data", "fsck")["corrupt"] == []


def test_tracked_data_restore_never_checks_out_a_corrupted_object(
        example_built: Project) -> None:
    raw = next(o for o in yaml.safe_load(example_built.read("data.dvc"))["outs"])
    manifest = json.loads(obj(example_built, raw["md5"]).read_bytes())
    train_md5 = next(e["md5"] for e in manifest if e["relpath"] == "train.csv")
    corrupt(obj(example_built, train_md5))
    shutil.rmtree(example_built.path / "data/raw")
    proc = example_built.run("run")
    assert proc.returncode == 1
    assert train_md5 in error(proc)
    assert not (example_built.path / "data/raw/train.csv").exists()


def test_pull_replaces_a_corrupted_local_object_first_time(pulled: Project) -> None:
    model = lock_md5(pulled, "train", MODEL)
    corrupt(obj(pulled, model), keep_mtime=True)  # DVC's own state still trusts the object
    proc = pulled.run("pull")  # the damaged local copy is fetched again, once, by its hash
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert md5(obj(pulled, model)) == model
    assert md5(pulled.path / MODEL) == model


@pytest.mark.parametrize("protected", [True, False], ids=["read-only", "writable"])
def test_corrupted_object_on_the_remote_is_not_checked_out(
        origin: Project, tmp_path: Path, protected: bool) -> None:
    remote = tmp_path / "remote"
    shutil.copytree(remote_of(origin), remote)
    model = lock_md5(origin, "train", MODEL)
    bad = remote / "files/md5" / model[:2] / model[2:]
    corrupt(bad)
    if not protected:  # DVC rehashes a writable object itself, and drops it from the remote
        bad.chmod(0o644)
    proj = clone(origin, tmp_path / "clone")
    assert proj.dvc("remote", "modify", "--local", "store", "url", str(remote)).returncode == 0
    proc = proj.run("pull")
    assert proc.returncode == 1, proc.stdout
    message = error(proc)
    assert MODEL in message and model in message
    assert not (proj.path / MODEL).exists()
    assert proj.run_json("data", "fsck")["corrupt"] == []  # nothing corrupt kept in the cache
    assert "push a good one" in message or "push them" in message


def test_run_pull_never_checks_out_a_corrupted_remote_object(
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
    assert report["evaluate"]["outcome"] == "skipped"
    assert not (proj.path / MODEL).exists()


def test_push_refuses_corrupted_objects(example_built: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    add_remote(example_built, remote)
    model = lock_md5(example_built, "train", MODEL)
    corrupt(obj(example_built, model))
    proc = example_built.run("push")
    assert proc.returncode == 1
    assert model in error(proc) and "fsck --repair" in error(proc)
    assert not remote.exists() or not any(p.is_file() for p in remote.rglob("*"))


def test_interrupted_transfer_leaves_nothing_fsck_or_gc_count(
        origin: Project, tmp_path: Path) -> None:
    proj = clone(origin, tmp_path / "clone")
    model = lock_md5(origin, "train", MODEL)
    folder = obj(proj, model).parent
    folder.mkdir(parents=True)
    partial = (remote_of(origin) / "files/md5" / model[:2] / model[2:]).read_bytes()[:4096]
    strays = [folder / f"{model[2:]}.{uuid.uuid4()}.tmp",  # as DVC's transfer names them
              folder / f".{model[2:]}.{uuid.uuid4().hex}.tmp",  # as mlbuild's cache does
              folder.parent / f".ingest.{uuid.uuid4().hex}.tmp"]  # an interrupted commit
    for stray in strays:
        stray.write_bytes(partial)
    report = proj.run_json("data", "fsck")
    assert report["objects"] == 0 and report["corrupt"] == []
    assert all(str(s) not in proj.run_json("gc")["paths"] for s in strays)  # type: ignore[operator]
    proc = proj.run("pull")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert md5(obj(proj, model)) == model
    assert set(outcomes(proj).values()) == {"up-to-date"}
    assert fingerprints(proj) == fingerprints(origin)
    assert proj.run_json("data", "fsck")["corrupt"] == []


# -- garbage collection ------------------------------------------------------------------------

def change_learning_rate(proj: Project) -> str:
    """Rebuild with a new learning rate; return the now unreferenced old model's hash."""
    old = lock_md5(proj, "train", MODEL)
    config = proj.path / "configs/model/lightgbm.yaml"
    config.write_text(config.read_text().replace("learning_rate: 0.1", "learning_rate: 0.05"))
    assert outcomes(proj)["train"] == "ran"
    assert lock_md5(proj, "train", MODEL) != old
    return old


@pytest.fixture(scope="session")
def relearned_built(built_example: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Path, str]:
    """The built example committed, then rebuilt with a new learning rate (not committed),
    once per test run for every worker: (its directory, the old model's hash, now
    referenced by the commit only). Do not modify it; copy it with `relearned`."""
    root = shared_dir(tmp_path_factory) / "example-relearned"
    root.mkdir(exist_ok=True)
    with locked(root.with_suffix(".lock")):
        if not (root / "old-model").exists():
            shutil.rmtree(root / "example", ignore_errors=True)  # an attempt that failed
            copy_tree(built_example, root / "example")
            proj = Project(root / "example")
            commit_all(proj)
            (root / "old-model").write_text(change_learning_rate(proj))
    return root / "example", (root / "old-model").read_text()


@pytest.fixture
def relearned(relearned_built: tuple[Path, str], tmp_path: Path) -> tuple[Project, str]:
    """A private copy of relearned_built: (the project, the old model's hash)."""
    copy_tree(relearned_built[0], tmp_path / "example")
    return Project(tmp_path / "example"), relearned_built[1]


def test_gc_dry_run_reports_and_force_removes_only_unreferenced(
        relearned: tuple[Project, str]) -> None:
    example_built, old = relearned  # rebuilt with a new learning rate: the old model unused
    before = cache_files(example_built)
    report = example_built.run_json("gc")
    assert str(obj(example_built, old)) in report["paths"]  # type: ignore[operator]
    assert report["would_remove"] == len(report["paths"])  # type: ignore[arg-type]
    assert int(report["bytes"]) >= obj(example_built, old).stat().st_size  # type: ignore[call-overload]
    assert cache_files(example_built) == before  # a dry run removes nothing

    report = example_built.run_json("gc", "--force")
    assert str(obj(example_built, old)) in report["paths"]  # type: ignore[operator]
    assert not obj(example_built, old).exists()
    assert "up to date" in example_built.dvc("status").stdout
    assert set(outcomes(example_built).values()) == {"up-to-date"}
    assert example_built.run_json("data", "fsck")["corrupt"] == []
    assert example_built.run_json("gc")["would_remove"] == 0


def test_gc_refuses_when_a_needed_manifest_is_unreadable(example_built: Project) -> None:
    prepared = lock_md5(example_built, "prepare", "data/prepared")
    corrupt(obj(example_built, prepared))
    before = cache_files(example_built)
    proc = example_built.run("gc", "--force")
    assert proc.returncode == 1
    assert str(obj(example_built, prepared)) in error(proc) and "fsck --repair" in error(proc)
    assert cache_files(example_built) == before  # its files were not taken for garbage


def test_gc_all_commits_keeps_what_history_needs(relearned: tuple[Project, str]) -> None:
    example_built, old = relearned  # committed, then rebuilt with a new learning rate
    commit_all(example_built)
    report = example_built.run_json("gc", "--all-commits", "--force")
    assert str(obj(example_built, old)) not in report["paths"]  # type: ignore[operator]
    assert obj(example_built, old).is_file()
    report = example_built.run_json("gc", "--force")
    assert str(obj(example_built, old)) in report["paths"]  # type: ignore[operator]


# -- data add ----------------------------------------------------------------------------------

def raw_rows(proj: Project, count: int) -> list[str]:
    return proj.read("data/raw/train.csv").splitlines()[: count + 1]


@pytest.fixture
def with_extra_contract(example_built: Project) -> Project:
    """The example with a project contract on data/extra.csv (the raw digits schema)."""
    config = example_built.path / "mlbuild.yaml"
    lines = config.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("contracts:")) + 1
    lines.insert(at, "  data/extra.csv: stages.schemas:raw_schema\n")  # not at the end: other
    config.write_text("".join(lines))  # blocks (serving:) follow contracts:
    return example_built


def test_data_add_refuses_data_that_violates_its_contract(with_extra_contract: Project) -> None:
    proj = with_extra_contract
    rows = raw_rows(proj, 10)
    rows[3] = "12" + rows[3][rows[3].index(","):]  # label 12: out of range 0..9
    proj.write("data/extra.csv", "\n".join(rows) + "\n")
    proc = proj.run("data", "add", "data/extra.csv")
    assert proc.returncode == 1, proc.stdout
    message = error(proc)
    assert "data/extra.csv" in message and "'label'" in message and "12" in message
    assert not (proj.path / "data/extra.csv.dvc").exists()
    assert "/extra.csv" not in proj.read("data/.gitignore")


def test_data_add_tracks_valid_data_like_dvc(with_extra_contract: Project) -> None:
    proj = with_extra_contract
    proj.write("data/extra.csv", "\n".join(raw_rows(proj, 10)) + "\n")
    proc = proj.run("data", "add", "data/extra.csv")
    assert proc.returncode == 0, proc.stderr
    assert "data/extra.csv.dvc" in proc.stdout
    pointer = yaml.safe_load(proj.read("data/extra.csv.dvc"))
    assert pointer["outs"][0]["md5"] == md5(proj.path / "data/extra.csv")
    assert obj(proj, pointer["outs"][0]["md5"]).is_file()
    assert "up to date" in proj.dvc("status").stdout


def test_data_add_of_a_missing_file_is_bad_input(example: Project) -> None:
    proc = example.run("data", "add", "data/nothere.csv")
    assert proc.returncode == 2
    assert "data/nothere.csv" in error(proc)
