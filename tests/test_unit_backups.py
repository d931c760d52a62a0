"""Output backups, in-process: a stage's previous outputs are moved aside while it runs, put
back when it fails, dropped when it succeeds, and put back by the next run after a kill."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlbuild.engine.recovery import clean
from mlbuild.engine.runner import backed_up_outputs
from mlbuild.files.layout import state_dir
from mlbuild.pipeline.model import Stage, parse_stage
from mlbuild.store.hashing import md5_file

OLD = {"out.txt": "old", "d/f": "old f", "keep.log": "log"}


def _stage() -> Stage:
    return parse_stage("s", {"cmd": "true", "outs": ["out.txt", "d", "fresh.txt",
                                                     {"keep.log": {"persist": True}}]},
                       "dvc.yaml")


def _setup(root: Path) -> Stage:
    for rel, text in OLD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return _stage()


def _backups(root: Path) -> list[Path]:
    box = state_dir(root) / "backup"
    return [*root.rglob(".*mlbuild-backup"), *(box.iterdir() if box.is_dir() else [])]


def test_a_failed_stage_gets_its_previous_outputs_back(tmp_path: Path) -> None:
    stage = _setup(tmp_path)
    with pytest.raises(RuntimeError), backed_up_outputs(tmp_path, stage,
                                                        state_dir(tmp_path) / "backup"):
        assert not (tmp_path / "out.txt").exists() and not (tmp_path / "d").exists()
        assert (tmp_path / "keep.log").read_text() == "log"  # persistent: left in place
        (tmp_path / "out.txt").write_text("half")
        (tmp_path / "fresh.txt").write_text("half")
        (tmp_path / "keep.log").write_text("log+")
        raise RuntimeError("the command failed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert (tmp_path / "d" / "f").read_text() == "old f"
    assert not (tmp_path / "fresh.txt").exists()  # half-written, nobody had it before
    assert (tmp_path / "keep.log").read_text() == "log+"  # persistent outputs are the stage's
    assert _backups(tmp_path) == []


def test_a_successful_stage_leaves_no_backup(tmp_path: Path) -> None:
    stage = _setup(tmp_path)
    with backed_up_outputs(tmp_path, stage, state_dir(tmp_path) / "backup"):
        (tmp_path / "out.txt").write_text("new")
        (tmp_path / "d").mkdir()
    assert (tmp_path / "out.txt").read_text() == "new"
    assert list((tmp_path / "d").iterdir()) == []
    assert _backups(tmp_path) == []


def _killed_mid_stage(root: Path, stage: Stage, recorded: dict[str, str]) -> None:
    """A child process moves the outputs aside, starts writing, and dies (no cleanup)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            with backed_up_outputs(root, stage, state_dir(root) / "backup", recorded):
                (root / "out.txt").write_text("half")
                code = 0
                os._exit(code)  # killed: the context manager never finishes
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _lock(root: Path, md5: str) -> None:
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  s:\n    cmd: 'true'\n    outs:\n    - path: out.txt\n"
        f"      hash: md5\n      md5: {md5}\n      size: 3\n")


def test_after_a_kill_the_next_run_puts_the_outputs_back(tmp_path: Path) -> None:
    stage = _setup(tmp_path)
    _lock(tmp_path, md5_file(tmp_path / "out.txt"))
    _killed_mid_stage(tmp_path, stage, {"out.txt": md5_file(tmp_path / "out.txt")})
    assert (tmp_path / "out.txt").read_text() == "half" and _backups(tmp_path)
    found = clean(tmp_path, crashed=True)
    assert sorted(found.restored) == ["d", "out.txt"]
    assert (tmp_path / "out.txt").read_text() == "old"
    assert (tmp_path / "d" / "f").read_text() == "old f"
    assert _backups(tmp_path) == []


def test_after_a_kill_an_output_rebuilt_since_is_kept(tmp_path: Path) -> None:
    stage = _setup(tmp_path)
    old = md5_file(tmp_path / "out.txt")
    _killed_mid_stage(tmp_path, stage, {"out.txt": old})
    (tmp_path / "out.txt").write_text("new")  # `dvc repro` rebuilt it and recorded it
    _lock(tmp_path, md5_file(tmp_path / "out.txt"))
    found = clean(tmp_path, crashed=True)
    assert "out.txt" in found.kept and "out.txt" not in found.restored
    assert (tmp_path / "out.txt").read_text() == "new"
