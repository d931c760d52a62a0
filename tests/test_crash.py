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
