"""Output that is not a terminal (a CI log, a pipe): plain lines and a plain summary, rich
never loaded; FORCE_COLOR asks for rich's table anyway. The process leaves without the
interpreter's teardown, and nothing it printed or recorded is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _env
from tests.scenario import new_project

FILES = {
    "seed.txt": "seed\n",
    "dvc.yaml": """\
stages:
  first:
    cmd: cp seed.txt first.txt
    deps: [seed.txt]
    outs: [first.txt]
  second:
    cmd: echo "a long reason to print, well past eighty columns of output in a CI log" > second.txt
    outs: [second.txt]
""",
}
BOX = set("┏┃━┡│└")


def _run(path: Path, *args: str, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "mlbuild", *args],
                          cwd=path, env=_env({"COLUMNS": "80", **(env or {})}),
                          capture_output=True, text=True, timeout=300)


def _imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


def test_plain_lines_and_summary_without_rich(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", FILES)
    proc = _run(proj.path, "run", "-j", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["built", "first", *lines[0].split()[2:]]
    assert "built second" in lines[1]
    assert lines[2].startswith("mlbuild: 2 stage(s) in")
    assert [line.split()[:2] for line in lines[3:]] == [
        ["stage", "result"], ["first", "built"], ["second", "built"]]
    assert not BOX & set(proc.stdout)
    assert "rich" not in {name.split(".")[0] for name in _imported(proc.stderr)}
    # the run is in the history, written before the process left
    log = json.loads(proj.run("log", "-n", "1", "--json").stdout)
    assert log[0]["status"] == "ok" and len(log[0]["stages"]) == 2


def test_a_partial_rebuild_counts_the_others(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", FILES)
    assert proj.run("run").returncode == 0
    proj.write("seed.txt", "changed\n")
    proc = _run(proj.path, "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mlbuild: 1 stage(s) in" in proc.stdout
    assert proc.stdout.rstrip().endswith("1 other stage(s) up to date")
    assert "dependency 'seed.txt' modified" in proc.stdout


def test_force_color_gets_richs_table(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", FILES)
    proc = _run(proj.path, "run", env={"FORCE_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(proc.stdout) >= BOX
    assert "rich.console" in _imported(proc.stderr)


def test_a_failed_stage_still_reports_on_stderr_with_exit_1(tmp_path: Path) -> None:
    files = {**FILES, "dvc.yaml": FILES["dvc.yaml"].replace("cp seed.txt", "cp missing.txt")}
    proj = new_project(tmp_path / "p", files)
    proc = proj.run("run", "-j", "1")
    assert proc.returncode == 1
    assert "FAILED first" in proc.stdout
    assert proc.stderr.startswith("mlbuild: error: stage 'first' failed")


def _stages(n: int) -> dict[str, str]:
    lines = ["stages:"]
    for i in range(n):
        lines += [f"  s{i}:", f"    cmd: sleep 0.2 && echo {i} > o{i}.txt", f"    outs: [o{i}.txt]"]
    return {"dvc.yaml": "\n".join(lines) + "\n"}


@pytest.mark.parametrize("both", [False, True], ids=["stdout", "stdout-and-stderr"])
def test_a_reader_that_goes_away_does_not_stop_the_build(tmp_path: Path, both: bool) -> None:
    """`mlbuild run | head -1` (and `2>&1 | head -1`): the build goes on to the end without
    printing, says so on stderr once if it can, and exits with its own code; real DVC finds
    everything recorded."""
    proj = new_project(tmp_path / "p", _stages(4))
    proc = subprocess.Popen([sys.executable, "-m", "mlbuild", "run", "-j", "1"], cwd=proj.path,
                            env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if both else subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader is gone, as `head -1` leaves
    err = "" if both else proc.communicate(timeout=120)[1].decode()
    assert proc.wait(timeout=120) == 0, err
    assert b"built s0" in first
    if not both:
        assert err == ("mlbuild: standard output was closed; the build goes on without "
                       "printing to it\n")
    assert all((proj.path / f"o{i}.txt").read_text() == f"{i}\n" for i in range(4))
    dvc = proj.dvc("status")
    assert dvc.returncode == 0 and "up to date" in dvc.stdout, dvc.stdout


def test_a_closed_output_ends_a_report_quietly_with_exit_1(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", _stages(2))
    assert proj.run("run").returncode == 0
    for args in (["status"], ["run", "--json"], ["log"]):
        read, write = os.pipe()
        os.close(read)  # nobody will read: the first write meets a closed pipe
        proc = subprocess.run([sys.executable, "-m", "mlbuild", *args], cwd=proj.path,
                              env=_env(), stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120)
        os.close(write)
        assert (proc.returncode, proc.stderr) == (1, ""), args
