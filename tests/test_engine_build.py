"""The engine's build entry point and the isolation service, called in-process on real git
projects; and verify driving its scratch build through them, in its own process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from mlbuild.engine.inputs import prepare
from mlbuild.engine.isolation import CacheMode, scratch_workspace
from mlbuild.engine.session import RunRequest, build, plan
from mlbuild.errors import MlbuildError
from mlbuild.store.cache import Cache
from tests.conftest import Project
from tests.scenario import new_project
from tests.test_crash import gone

PIPELINE = """
stages:
  up:
    cmd: cp data.txt up.txt
    deps: [data.txt]
    outs: [up.txt]
  down:
    cmd: tr a-z A-Z < up.txt > down.txt
    deps: [up.txt]
    outs: [down.txt]
"""
JOURNAL = ".dvc/tmp/mlbuild/history/journal.jsonl"


def _journal(root: Path) -> list[dict[str, Any]]:
    path = root / JOURNAL
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _tree(root: Path) -> dict[str, str]:
    """md5 of every file outside .git and mlbuild's state directory."""
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts
            and "tmp" not in p.relative_to(root).parts[:2]}


@pytest.fixture
def built(tmp_path: Path) -> Project:
    """A two-stage project, built by the engine in-process and committed."""
    proj = new_project(tmp_path / "proj", {"data.txt": "abc\n", "dvc.yaml": PIPELINE})
    result = build(proj.path, RunRequest())
    assert not result.failed
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    return proj


def test_build_returns_the_planned_order_and_records_the_run(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "proj", {"data.txt": "abc\n", "dvc.yaml": PIPELINE})
    result = build(proj.path, RunRequest(targets=["down"]))
    assert result.order == ["up", "down"]
    assert {n: str(r.outcome) for n, r in result.stages.items()} == {"up": "ran", "down": "ran"}
    assert proj.read("down.txt") == "ABC\n"
    (record,) = _journal(proj.path)
    assert record["command"] == "run"
    assert {s["stage"]: s["outcome"] for s in record["stages"]} == {"up": "ran", "down": "ran"}
    again = build(proj.path, RunRequest(force=True), record=False)
    assert {str(r.outcome) for r in again.stages.values()} == {"ran"}
    assert len(_journal(proj.path)) == 1  # a caller that records the build itself


def test_plan_says_what_is_stale_and_why(built: Project) -> None:
    ws = prepare(built.path, dry=True)
    assert plan(ws, ["up", "down"]).up_to_date
    built.write("data.txt", "xyz\n")
    ws = prepare(built.path, dry=True)
    full = plan(ws, ["up", "down"])
    assert full.order == ["up", "down"] and full.stale == ["up"]
    step = full.step("up")
    assert step is not None and [(r.kind, r.path) for r in step.reasons] == [("data", "data.txt")]
    short = plan(ws, ["up", "down"], until_stale=True)
    assert not short.complete and short.order == ["up"]
    dry = build(built.path, RunRequest(dry_run=True))
    assert {n: str(r.outcome) for n, r in dry.stages.items()} == {"up": "would-run",
                                                                  "down": "would-run"}
    assert any("upstream stage 'up' will run" in r for r in dry.stages["down"].reasons)


def test_scratch_build_leaves_the_project_untouched_and_is_removed(built: Project) -> None:
    before = _tree(built.path)
    with scratch_workspace(built.path) as ws:
        assert not ws.is_relative_to(built.path)
        assert Cache(ws).dir == ws / ".dvc" / "cache"  # its own, seeded from the project's
        result = build(ws, RunRequest(force=True), record=False)
        assert {str(r.outcome) for r in result.stages.values()} == {"ran"}
        assert (ws / "down.txt").read_text() == "ABC\n"
    assert not ws.parent.exists()
    assert _tree(built.path) == before
    assert len(_journal(built.path)) == 1  # only the fixture's own run


def test_scratch_workspace_is_removed_when_the_build_raises(built: Project) -> None:
    built.write("dvc.yaml", "stages:\n  bad:\n    cmd: true\n    outs: [../outside.txt]\n")
    built.git("rm", "-q", "dvc.lock")  # (frozen outputs are seeded from a recorded lock)
    built.git("commit", "-qam", "an output outside the project")
    seen: list[Path] = []
    with pytest.raises(MlbuildError), scratch_workspace(built.path) as ws:
        seen.append(ws)
        build(ws, RunRequest(force=True), record=False)
    assert seen and not seen[0].parent.exists()


def test_keep_leaves_the_scratch_workspace(built: Project) -> None:
    with scratch_workspace(built.path, keep=True) as ws:
        pass
    try:
        assert (ws / "dvc.lock").is_file() and not (ws / "up.txt").exists()
    finally:
        import shutil

        shutil.rmtree(ws.parent)


def test_shared_cache_mode_builds_on_the_project_cache(built: Project) -> None:
    before = _tree(built.path)
    with scratch_workspace(built.path, "HEAD~1", cache=CacheMode.SHARED) as ws:
        assert not (ws / "dvc.lock").exists()  # the revision before the build was committed
        assert Cache(ws).dir == Cache(built.path).dir.resolve()
        result = build(ws, RunRequest(), record=False)
        # the project's run-cache knows these inputs: restored, not rerun
        assert {str(r.outcome) for r in result.stages.values()} == {"restored"}
    assert not ws.parent.exists()
    assert _tree(built.path) == before


def test_verify_builds_in_its_own_process_and_records_the_stages(tmp_path: Path) -> None:
    ppid = tmp_path / "ppid"
    proj = new_project(tmp_path / "proj", {"data.txt": "abc\n", "dvc.yaml": f"""
stages:
  s:
    cmd: echo $PPID > {ppid}; cp data.txt out.txt
    deps: [data.txt]
    outs: [out.txt]
"""})
    assert proj.run("run").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    verify = proj.popen("verify")
    out, err = verify.communicate(timeout=300)
    assert verify.returncode == 0, err + out
    # the stage's shell was started by verify itself, not by an `mlbuild run` it spawned
    assert int(ppid.read_text()) == verify.pid
    record = _journal(proj.path)[-1]
    assert [r["command"] for r in _journal(proj.path)] == ["run", "verify"]
    assert record["detail"]["build"] == {"s": "ran"}
    (stage,) = record["stages"]
    md5 = hashlib.md5(b"abc\n").hexdigest()
    assert stage["outcome"] == "identical" and stage["outputs"] == {"out.txt": md5}


def test_sigterm_of_verify_stops_its_scratch_build(tmp_path: Path) -> None:
    started, pid = tmp_path / "started", tmp_path / "pid"
    proj = new_project(tmp_path / "proj", {"data.txt": "A\n", "dvc.yaml": f"""
stages:
  s:
    cmd: >-
      cp data.txt out.txt; if [ -e {pid} ]; then echo $$ > {started}; sleep 300; fi
    deps: [data.txt]
    outs: [out.txt]
"""})
    assert proj.run("run").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    pid.touch()
    verify = proj.popen("verify")
    deadline = time.monotonic() + 120
    while not (started.exists() and started.read_text().strip()):
        assert time.monotonic() < deadline and verify.poll() is None, verify.communicate()
        time.sleep(0.05)
    stage = int(started.read_text())
    os.kill(verify.pid, signal.SIGTERM)
    _, err = verify.communicate(timeout=60)
    assert verify.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err
    assert gone(stage), "the scratch build's stage outlived verify"
    assert not list(Path(tempfile.gettempdir()).glob(f"mlbuild-verify-{verify.pid}-*"))
