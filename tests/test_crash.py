"""Crash and concurrency safety: DVC's lock, kill -9, inputs changing mid-stage, full disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.errcheck import error_line
from tests.scenario import lock, new_project, stale

COPY = """
stages:
  copy:
    cmd: cp data.txt out.txt
    deps: [data.txt]
    outs: [out.txt]
"""


def wait_for(path: Path, timeout: float = 30) -> None:
    """Poll until *path* exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def gone(pid: int, timeout: float = 5) -> bool:
    """True once no process has *pid* (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def built(tmp_path: Path, pipeline: str, files: dict[str, str] | None = None) -> Project:
    """A committed project with *pipeline* as dvc.yaml, built once."""
    proj = new_project(tmp_path / "proj", {"dvc.yaml": pipeline, "data.txt": "v1\n",
                                           **(files or {})})
    proc = proj.run("run", "-j", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proj


# -- item 5: the stat cache sees an edit whose mtime was put back ----------------------------


def test_same_size_edit_with_mtime_restored_is_seen(tmp_path: Path) -> None:
    proj = built(tmp_path, COPY)
    data = proj.path / "data.txt"
    st = data.stat()
    data.write_text("v2\n")  # same size
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `touch -r` would
    assert data.stat().st_mtime_ns == st.st_mtime_ns
    assert stale(proj) == {"copy": ["dependency 'data.txt' modified"]}
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "v2\n"
    assert lock(proj)["copy"]["deps"][0]["md5"] != "" and stale(proj) == {}


# -- item 1: DVC's repository lock -----------------------------------------------------------

# The stage appends in two steps with a pause between, so two tools running it at once would
# leave "A B B" (or worse) in out.txt.
GATED = """
stages:
  gated:
    cmd: cat data.txt > out.txt && touch {started} && while [ ! -e {go} ]; do sleep 0.05; done && echo B >> out.txt
    deps: [data.txt]
    outs: [out.txt]
"""


def gated(tmp_path: Path) -> tuple[Project, Path, Path]:
    """A committed, unbuilt project whose stage waits for a 'go' file (paths outside it)."""
    started, go = tmp_path / "started", tmp_path / "go"
    proj = new_project(tmp_path / "proj", {
        "dvc.yaml": GATED.format(started=started, go=go), "data.txt": "A\n"})
    return proj, started, go


def dvc_popen(proj: Project, *args: str) -> subprocess.Popen[str]:
    from tests.conftest import _env

    return subprocess.Popen([os.sys.executable, "-m", "dvc", *args], cwd=proj.path,  # type: ignore[attr-defined]
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_dvc_commands_refuse_while_mlbuild_runs(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    first = proj.popen("run", "-j", "1")
    wait_for(started)
    repro = proj.dvc("repro")
    gc = proj.dvc("gc", "-w", "-f")
    go.touch()
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    for proc in (repro, gc):
        assert proc.returncode != 0 and "Unable to acquire lock" in proc.stderr, proc.stderr
    assert proj.read("out.txt") == "A\nB\n"
    assert stale(proj) == {}
    status = proj.dvc("status")
    assert "up to date" in status.stdout, status.stdout


def test_mlbuild_waits_for_dvc_repro_in_mid_stage(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    repro = dvc_popen(proj, "repro")
    wait_for(started)  # DVC runs the command with its repository lock released
    busy = proj.run("run", "--no-wait")
    line = error_line(busy, 2, "DVC command", "dvc repro", f"pid {repro.pid}", "--no-wait")
    assert "Traceback" not in line
    second = proj.popen("run", "-j", "1", "--json")
    assert second.stderr is not None
    waiting = second.stderr.readline()  # blocks until mlbuild says it waits (or exits)
    assert "waiting for it to finish" in waiting and "dvc repro" in waiting, waiting
    assert second.poll() is None
    go.touch()
    out, _ = repro.communicate(timeout=60)
    assert repro.returncode == 0, out
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    assert set(proj.outcomes(json.loads(stdout)).values()) == {"up-to-date"}
    assert proj.read("out.txt") == "A\nB\n"


def test_mlbuild_waits_for_a_dvc_command_holding_the_lock(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    go.touch()
    holder = subprocess.Popen(  # DVC's own lock class, held as `dvc repro` holds it
        [os.sys.executable, "-c",  # type: ignore[attr-defined]
         "import sys, time; from dvc.lock import make_lock; "
         "l = make_lock('.dvc/tmp/lock'); l.lock(); print('locked', flush=True); "
         "sys.stdin.read()"],
        cwd=proj.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    busy = proj.run("run", "--no-wait")
    error_line(busy, 2, f"pid {holder.pid}", "--no-wait")
    for args in (("gc", "-f"), ("data", "add", "data.txt"), ("push",), ("compile",)):
        with pytest.raises(subprocess.TimeoutExpired):  # they wait for the lock
            proj.run(*args, timeout=2)
    holder.communicate("", timeout=10)
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "A\nB\n"
