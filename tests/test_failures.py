"""A failed, interrupted or concurrent build exits as documented and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.conftest import Project
from tests.errcheck import (
    CHAIN,
    CHAIN_OUTS,
    TRAIN_CMD,
    error_line,
    snapshot,
)

SLOW = 3.0  # seconds the concurrency tests' first build holds the project


def set_train(proj: Project, cmd: str, text: str = CHAIN) -> None:
    """Replace the train stage's command (YAML-quoted)."""
    proj.write("dvc.yaml", text.replace(TRAIN_CMD, json.dumps(cmd)))


def wait_for(path: Path, timeout: float = 30) -> str:
    """Poll until *path* exists with content; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def gone(pid: int, timeout: float = 3) -> bool:
    """True once no process has *pid* (allowing a moment for the kernel to reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# -- a stage that fails ----------------------------------------------------------------------


def test_failed_command_reports_code_and_stderr_tail(chain: Project) -> None:
    set_train(chain, "echo partial > model.txt; echo 'first line' >&2; "
                     "echo 'CUDA out of memory' >&2; exit 3")
    before = snapshot(chain, *CHAIN_OUTS)
    proc = chain.run("run", "-j", "1")
    line = error_line(proc, 1, "stage 'train'", "code 3", "CUDA out of memory", "first line")
    assert line.index("first line") < line.index("CUDA out of memory")
    assert snapshot(chain, *CHAIN_OUTS) == before  # old model back, lock and cache untouched


def test_keep_going_builds_independent_stages_and_skips_dependents(chain: Project) -> None:
    text = CHAIN.replace("report v1", "report v2")
    set_train(chain, "exit 1", text)
    proc = chain.run("run", "-j", "1", "--json")
    error_line(proc, 1, "stage 'train'", "code 1")
    assert chain.outcomes(json.loads(proc.stdout))["report"] != "ran"
    assert chain.read("report.txt") == "report v1\n"

    proc = chain.run("run", "-j", "1", "--keep-going", "--json")
    error_line(proc, 1, "stage 'train'")
    outcomes = chain.outcomes(json.loads(proc.stdout))
    assert outcomes == {"prepare": "up-to-date", "train": "failed", "evaluate": "skipped",
                        "report": "ran"}
    assert chain.read("report.txt") == "report v2\n"
    lock = yaml.safe_load(chain.read("dvc.lock"))["stages"]
    assert lock["report"]["cmd"] == "echo report v2 > report.txt"
    assert lock["train"]["cmd"] == TRAIN_CMD


def test_missing_output_is_named_and_previous_version_put_back(chain: Project) -> None:
    set_train(chain, "echo done")
    before = snapshot(chain, *CHAIN_OUTS)
    error_line(chain.run("run", "-j", "1"), 1, "stage 'train'", "'model.txt'")
    assert snapshot(chain, *CHAIN_OUTS) == before


def test_new_stage_missing_one_output_commits_nothing(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN + (
        "  extra:\n    cmd: echo a > extra-a.txt\n    outs: [extra-a.txt, extra-b.txt]\n"))
    before = snapshot(chain, *CHAIN_OUTS)
    error_line(chain.run("run", "extra"), 1, "stage 'extra'", "'extra-b.txt'")
    assert snapshot(chain, *CHAIN_OUTS) == before  # in particular no cache object for extra-a
    assert "extra" not in chain.read("dvc.lock")
    assert not (chain.path / "extra-a.txt").exists()


# -- concurrent runs -------------------------------------------------------------------------


def start_slow_run(proj: Project, marker: Path) -> subprocess.Popen[str]:
    """Start a build whose train stage takes SLOW seconds; return once it is running."""
    set_train(proj, f"echo started > {marker}; sleep {SLOW}; "
                    "cat prepared.txt > model.txt; echo slow >> model.txt")
    first = proj.popen("run", "-j", "1")
    wait_for(marker)
    return first


def assert_lock_consistent(proj: Project) -> None:
    lock = yaml.safe_load(proj.read("dvc.lock"))
    assert set(lock["stages"]) == {"prepare", "train", "evaluate", "report"}
    status = proj.run_json("status")
    assert status["up_to_date"] is True, status


def test_second_run_waits_for_the_first(chain: Project, tmp_path: Path) -> None:
    first = start_slow_run(chain, tmp_path / "started")
    second = chain.run("run", "-j", "1", "--json")
    assert first.wait() == 0, first.stderr.read() if first.stderr else ""
    assert second.returncode == 0, second.stderr
    # it waited: the first run's train stage, stale when the second started, was built
    # by the first and found up to date by the second, which ran nothing itself
    assert set(chain.outcomes(json.loads(second.stdout)).values()) == {"up-to-date"}
    assert chain.read("model.txt").endswith("slow\n")
    assert_lock_consistent(chain)


def test_no_wait_fails_at_once_while_another_run_holds_the_project(
        chain: Project, tmp_path: Path) -> None:
    first = start_slow_run(chain, tmp_path / "started")
    proc = chain.run("run", "--no-wait")
    error_line(proc, 2, "another mlbuild run is in progress", "--no-wait")
    assert first.poll() is None  # it did not wait: the first run is still going
    assert first.wait() == 0
    assert_lock_consistent(chain)


# -- interrupts ------------------------------------------------------------------------------


def interrupt_slow_stage(chain: Project, tmp_path: Path, signum: int, cmd: str) -> tuple[
        subprocess.Popen[str], int]:
    """Start a build whose train stage runs *cmd* (which writes its pid to {pid} and then
    sleeps far longer than any wait here); once the stage is running, send *signum* to
    mlbuild and wait for it to exit. Returns the process and the stage's pid."""
    pidfile = tmp_path / "stage.pid"
    set_train(chain, cmd.format(pid=pidfile))
    proc = chain.popen("run", "-j", "1")
    pid = int(wait_for(pidfile))
    proc.send_signal(signum)
    try:  # a generous bound on the wait only: a hung mlbuild fails the test, not the suite
        proc.wait(timeout=120)
    finally:
        proc.kill()  # a no-op unless mlbuild hung
    return proc, pid


def assert_interrupted(proc: subprocess.Popen[str], code: int) -> None:
    assert proc.returncode == code
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlbuild: error: interrupted"), stderr


def test_ctrl_c_stops_the_stage_and_restores_its_output(chain: Project, tmp_path: Path) -> None:
    before = snapshot(chain, *CHAIN_OUTS)
    proc, pid = interrupt_slow_stage(
        chain, tmp_path, signal.SIGINT, "echo partial > model.txt; echo $$ > {pid}; exec sleep 600")
    assert_interrupted(proc, 130)
    assert gone(pid), "the stage's process outlived mlbuild"  # it would sleep for 10 minutes
    assert snapshot(chain, *CHAIN_OUTS) == before
    assert not any((chain.path / ".dvc" / "tmp" / "mlbuild" / "backup").glob("*"))


def test_ctrl_c_kills_a_stage_that_ignores_sigterm(chain: Project, tmp_path: Path) -> None:
    before = snapshot(chain, *CHAIN_OUTS)
    proc, pid = interrupt_slow_stage(
        chain, tmp_path, signal.SIGINT,
        "trap '' TERM; echo partial > model.txt; echo $$ > {pid}; exec sleep 600")
    assert_interrupted(proc, 130)  # mlbuild ended although the stage ignores SIGTERM:
    assert gone(pid), "the stage's process outlived mlbuild"  # it was killed
    assert snapshot(chain, *CHAIN_OUTS) == before


def test_sigterm_is_handled_like_ctrl_c(chain: Project, tmp_path: Path) -> None:
    before = snapshot(chain, *CHAIN_OUTS)
    proc, pid = interrupt_slow_stage(
        chain, tmp_path, signal.SIGTERM,
        "echo partial > model.txt; echo $$ > {pid}; exec sleep 600")
    assert_interrupted(proc, 128 + signal.SIGTERM)
    assert gone(pid), "the stage's process outlived mlbuild"
    assert snapshot(chain, *CHAIN_OUTS) == before


def test_failed_stage_that_removed_the_output_directory_gets_it_back(project: Project) -> None:
    project.write("dvc.yaml", """
        stages:
          rep:
            cmd: mkdir -p reports && echo v1 > reports/r.txt
            outs: [reports/r.txt]
    """)
    assert project.run("run").returncode == 0
    lock = project.read("dvc.lock")
    project.write("dvc.yaml", """
        stages:
          rep:
            cmd: rm -rf reports && false
            outs: [reports/r.txt]
    """)
    proc = project.run("run")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.read("reports/r.txt") == "v1\n"
    assert project.read("dvc.lock") == lock
