"""The run history: what `mlbuild run` records, `mlbuild log`, and a damaged journal."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml

from tests.conftest import Project
from tests.scenario import new_project

PIPELINE = {
    "src.txt": "abc\n",
    "dvc.yaml": """
        stages:
          upper:
            cmd: python -c "open('out.txt', 'w').write(open('src.txt').read().upper())"
            deps: [src.txt]
            outs: [out.txt]
          check:
            cmd: python -c "import sys; sys.exit(open('out.txt').read() != 'ABC\\n')"
            deps: [out.txt]
            outs: []
    """,
}
HISTORY = Path(".dvc/tmp/mlbuild/history")


def _log(proj: Project, *args: str) -> list[dict[str, object]]:
    proc = proj.run("log", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_run_records_revision_outcomes_and_output_hashes(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    assert proj.run("run", "-j", "1").returncode == 0
    assert proj.run("run").returncode == 0  # a no-op is recorded too
    newest, first = _log(proj)
    head = proj.git("rev-parse", "HEAD").stdout.strip()
    assert first["revision"] == head and newest["revision"] == head
    assert first["status"] == "ok" and first["command"] == "run"
    stages = {s["stage"]: s for s in first["stages"]}  # type: ignore[union-attr]
    assert stages["upper"]["outcome"] == "ran"
    lock = yaml.safe_load(proj.read("dvc.lock"))
    recorded = lock["stages"]["upper"]["outs"][0]["md5"]
    assert stages["upper"]["outputs"] == {"out.txt": recorded}
    assert first["dirty"] is False  # what the build wrote itself (dvc.lock) does not count
    assert newest["dirty"] is None  # a no-op spends no git call on it
    assert {s["outcome"] for s in newest["stages"]} == {"up-to-date"}  # type: ignore[union-attr]
    text = proj.run("log", "-n", "1").stdout
    assert text.startswith(str(newest["id"])[:12]) and "run  ok" in text


def test_a_failed_run_is_recorded_as_failed(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    proj.write("src.txt", "xyz\n")  # an uncommitted change to a source
    assert proj.run("run", "-j", "1").returncode == 1
    (run,) = _log(proj)
    assert run["status"] == "failed" and run["dirty"] is True
    outcomes = {s["stage"]: s["outcome"] for s in run["stages"]}  # type: ignore[union-attr]
    assert outcomes == {"upper": "ran", "check": "failed"}


def test_a_torn_journal_line_loses_no_later_run(tmp_path: Path) -> None:
    """A writer killed mid-line leaves a fragment: readers skip it, later runs still land."""
    proj = new_project(tmp_path / "p", PIPELINE)
    assert proj.run("run").returncode == 0
    journal = proj.path / HISTORY / "journal.jsonl"
    with open(journal, "ab") as fobj:
        fobj.write(b'{"id": "torn", "comm')
    assert len(_log(proj)) == 1
    assert proj.run("run", "--force").returncode == 0
    runs = _log(proj)
    assert len(runs) == 2 and runs[0]["detail"]["force"] is True  # type: ignore[index]


def test_a_history_from_a_newer_mlbuild_is_a_clear_error(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    assert proj.run("run").returncode == 0
    assert _log(proj)
    with sqlite3.connect(proj.path / HISTORY / "history.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    proc = proj.run("log")
    assert proc.returncode == 2
    assert "newer mlbuild (schema 99" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_log_without_runs(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    proc = proj.run("log")
    assert proc.returncode == 0 and proc.stdout.strip() == "no runs recorded yet"
    assert proj.run("run", "--dry-run").returncode == 0
    assert _log(proj) == []  # a dry run changes nothing and is not recorded


def test_verify_is_recorded_with_its_verdicts(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    assert proj.run("run").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    assert proj.run("verify").returncode == 0
    (run,) = _log(proj, "--command", "verify")
    assert run["status"] == "ok" and run["dirty"] is False
    verdicts = {s["stage"]: s["outcome"] for s in run["stages"]}  # type: ignore[union-attr]
    assert verdicts == {"upper": "identical", "check": "identical"}
    assert [r["command"] for r in _log(proj)] == ["verify", "run"]


def test_push_and_pull_are_recorded(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    assert proj.dvc("remote", "add", "-d", "store", str(tmp_path / "remote")).returncode == 0
    assert proj.run("run").returncode == 0
    assert proj.run("push").returncode == 0
    (push,) = _log(proj, "--command", "push")
    assert push["status"] == "ok" and push["detail"]["pushed"] > 0  # type: ignore[index,operator]
    (proj.path / "out.txt").unlink()
    assert proj.run("pull", "-r", "store").returncode == 0
    (pull,) = _log(proj, "--command", "pull")
    assert pull["status"] == "ok" and pull["args"] == ["-r", "store"]
    assert (proj.path / "out.txt").read_text() == "ABC\n"


def test_data_commands_say_what_they_wait_for(tmp_path: Path) -> None:
    """A DVC process holding the repository lock: `data fsck` waits, saying so, then runs."""
    import subprocess
    import sys

    proj = new_project(tmp_path / "p", PIPELINE)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time, zc.lockfile; l = zc.lockfile.LockFile("
         "'.dvc/tmp/lock'); print('held', flush=True); time.sleep(3)"],
        cwd=proj.path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        proc = proj.run("data", "fsck")
        assert proc.returncode == 0, proc.stderr
        assert "waiting for it to finish" in proc.stderr
    finally:
        holder.wait(timeout=30)
