"""Cleanup after a killed run touches only what mlbuild left: never a user's own hidden
`*.tmp` file, never another writer's in-flight file in a shared cache, never a later build."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.scenario import assert_dvc_up_to_date, lock, md5, new_project, stale
from tests.test_crash import COPY, built, dead_pid, gated, wait_for

PIPELINE = """
stages:
  copy:
    cmd: mkdir -p models && cp data.txt models/out.txt
    deps: [data.txt]
    outs: [models/out.txt]
"""
USERS = (".notes.20240101.tmp", "models/.export.download.tmp", ".draft.0123abcd.tmp",
         "models/.d41d8cd98f00b204e9800998ecf8427e.tmp")  # the last two: the old pattern's shapes
HOUR = 3600


def plant_users_files(proj: Project) -> None:
    """The user's own hidden temporary files, in the root and beside an output."""
    for rel in USERS:
        proj.write(rel, "mine\n")


def assert_users_files_kept(proj: Project) -> None:
    for rel in USERS:
        assert proj.read(rel) == "mine\n", rel


def age(path: Path, seconds: int) -> None:
    """Set a file's mtime *seconds* into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


# -- finding 1: the user's own files survive every cleanup ------------------------------------


@pytest.mark.parametrize("command", [("data", "fsck"), ("data", "fsck", "--repair"),
                                     ("gc", "--force")])
def test_cleanup_commands_keep_the_users_hidden_tmp_files(tmp_path: Path,
                                                          command: tuple[str, ...]) -> None:
    proj = built(tmp_path, PIPELINE)
    plant_users_files(proj)
    ours = proj.path / "models" / f".out.txt.{dead_pid()}-0123456789ab.tmp"
    ours.write_text("partial")
    proc = proj.run(*command)
    assert proc.returncode == 0, proc.stderr
    assert_users_files_kept(proj)
    assert ".notes" not in proc.stdout and ".export" not in proc.stdout, proc.stdout
    assert ours.exists() == (command == ("data", "fsck")), command  # fsck alone only reports
    assert "leftovers of a killed run" in proc.stdout and ours.name in proc.stdout, proc.stdout


def test_plain_fsck_only_reports_a_stranded_backup(tmp_path: Path) -> None:
    proj = built(tmp_path, COPY)
    box = proj.path / ".dvc/tmp/mlbuild/backup" / f"copy-{dead_pid()}-01234567"
    box.mkdir(parents=True)
    (box / "0").write_text("v0\n")
    (box / "moved.json").write_text(f'[{{"path": "out.txt", "aside": ["{box / "0"}"]}}]')
    (proj.path / "out.txt").unlink()
    proc = proj.run("data", "fsck")
    assert proc.returncode == 0, proc.stderr
    assert "would put back: out.txt" in proc.stdout, proc.stdout
    assert not (proj.path / "out.txt").exists() and (box / "0").exists()


def kill_during_stage(proj: Project, started: Path, *args: str) -> None:
    """Start `mlbuild run`, SIGKILL it once the stage's command has started."""
    first = proj.popen("run", "-j", "1", *args)
    wait_for(started)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)


def test_run_after_a_crash_keeps_the_users_files_and_says_what_it_cleaned(
        tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    plant_users_files(proj)
    kill_during_stage(proj, started)
    ours = proj.path / f".out.txt.{dead_pid()}-0123456789ab.tmp"
    ours.write_text("partial")
    go.touch()
    proc = proj.run("run", "-j", "1")
    assert proc.returncode == 0, proc.stderr
    assert_users_files_kept(proj)
    assert not ours.exists()
    notice = [ln for ln in proc.stderr.splitlines() if "killed run" in ln]
    assert notice and ours.name in notice[0] and ".notes" not in proc.stderr, proc.stderr
    assert proj.read("out.txt") == "A\nB\n" and stale(proj) == {}


# -- finding 2: a shared cache holds other writers' in-flight files ---------------------------


def test_foreign_cache_tmp_survives_until_it_is_an_hour_old(tmp_path: Path) -> None:
    proj = built(tmp_path, COPY)
    files = proj.path / ".dvc/cache/files/md5"
    shard = next(p for p in files.iterdir() if p.is_dir())
    young = {shard / ".0f1e2d3c4b5a69788796a5b4c3d2e1f0.tmp",  # DVC's own in-flight name
             files / ".ingest.k3j4_x9q.tmp",  # another tool's, no pid
             shard / f".ab.{dead_pid()}-0123456789ab.tmp"}  # a pid from another machine
    old = {shard / ".1f1e2d3c4b5a69788796a5b4c3d2e1f0.tmp",
           shard / f".cd.{dead_pid()}-0123456789ab.tmp"}
    alive = shard / f".ef.{os.getpid()}-0123456789ab.tmp"
    for path in young | old | {alive}:
        path.write_text("in flight")
    for path in old | {alive}:
        age(path, 2 * HOUR)
    proc = proj.run("gc", "--force")
    assert proc.returncode == 0, proc.stderr
    assert {p for p in young | old | {alive} if p.exists()} == young | {alive}


# -- finding 9: a stale crash marker never undoes a later DVC build ---------------------------


def test_dvc_repro_after_a_killed_run_is_not_replaced_by_the_backup(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    go.touch()
    assert proj.run("run").returncode == 0
    go.unlink()
    started.unlink()
    kill_during_stage(proj, started, "--force")
    assert proj.read("out.txt") == "A\n"  # the killed stage's partial output
    proj.write("data.txt", "C\n")
    go.touch()
    repro = proj.dvc("repro")
    assert repro.returncode == 0, repro.stderr + repro.stdout
    assert proj.read("out.txt") == "C\nB\n"
    proc = proj.run("run", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("out.txt") == "C\nB\n", "the old backup replaced DVC's output"
    assert lock(proj)["gated"]["outs"][0]["md5"] == md5(proj, "out.txt")
    assert stale(proj) == {}
    assert not any((proj.path / ".dvc/tmp/mlbuild/backup").iterdir())
    assert_dvc_up_to_date(proj)


def test_killed_runs_partial_output_is_still_replaced_by_the_backup(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    go.touch()
    assert proj.run("run").returncode == 0
    go.unlink()
    started.unlink()
    kill_during_stage(proj, started, "--force")
    assert proj.read("out.txt") == "A\n"
    proc = proj.run("run", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("out.txt") == "A\nB\n" and stale(proj) == {}


def test_backup_never_goes_back_through_a_symlink_out_of_the_project(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    proj = new_project(tmp_path / "proj", {"dvc.yaml": PIPELINE, "data.txt": "v1\n"})
    assert proj.run("run").returncode == 0
    box = proj.path / ".dvc/tmp/mlbuild/backup" / f"copy-{dead_pid()}-01234567"
    box.mkdir(parents=True)
    (box / "0").write_text("planted\n")
    (box / "moved.json").write_text(
        f'[{{"path": "models/out.txt", "aside": ["{box / "0"}"]}}]')
    import shutil

    shutil.rmtree(proj.path / "models")
    (proj.path / "models").symlink_to(outside)
    (proj.path / ".dvc/tmp/mlbuild/running").touch()  # as a killed run leaves it
    proj.run("run", "--dry-run")
    assert not (outside / "out.txt").exists(), "the backup was written outside the project"
