"""The sandbox's verdicts on undeclared I/O, in-process: trace records and workspace snapshots
go in, findings and then warnings or a failed stage come out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlbuild.config.settings import Hermetic, ProjectConfig
from mlbuild.errors import StageFailedError
from mlbuild.pipeline.model import Stage, parse_stage
from mlbuild.sandbox.findings import Findings, analyse, snapshot
from mlbuild.sandbox.policy import Sandbox

STAGE = {"cmd": "python train.py", "deps": ["train.py", "data"], "outs": ["model.bin"]}


def _stage(**changes: object) -> Stage:
    return parse_stage("train", {**STAGE, **changes}, "dvc.yaml")


def _project(root: Path) -> None:
    for rel, text in {"train.py": "", "data/a.csv": "1", "secret.csv": "s",
                      "model.bin": "old", "notes.txt": "n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _trace(root: Path, trace: Path, **record: list[str]) -> None:
    """One traced process's record, as the audit hook writes it (absolute paths)."""
    trace.mkdir(exist_ok=True)
    absolute = {k: [str(root / p) for p in v] if k in ("reads", "writes") else v
                for k, v in record.items()}
    (trace / f"{len(list(trace.iterdir()))}.json").write_text(json.dumps(absolute))


def _findings(root: Path, stage: Stage, **record: list[str]) -> Findings:
    """Run the stage's file effects between two snapshots, then analyse its trace."""
    before = snapshot(root, [o.path for o in stage.outs])
    for rel in record.get("writes", []):
        (root / rel).write_text("written by the stage")
    after = snapshot(root, [o.path for o in stage.outs])
    _trace(root, root / ".trace", **record)
    return analyse(root, stage, root / ".trace", before, after, None)


def test_undeclared_reads_and_writes_are_found_declared_ones_are_not(tmp_path: Path) -> None:
    _project(tmp_path)
    found = _findings(tmp_path, _stage(),
                      reads=["train.py", "data/a.csv", "secret.csv", "tmp.txt"],
                      writes=["model.bin", "notes.txt", "tmp.txt"])
    assert found.reads == ["secret.csv"]  # a file it wrote itself is not an input
    assert found.writes == ["notes.txt", "tmp.txt"]
    assert found.traced  # one plain python command, every record readable
    assert found.changed == []  # what it wrote itself is a write, not a change seen


def test_a_change_nobody_traced_is_reported_as_changed(tmp_path: Path) -> None:
    _project(tmp_path)
    stage = _stage()
    before = snapshot(tmp_path, ["model.bin"])
    (tmp_path / "notes.txt").write_text("someone else")
    after = snapshot(tmp_path, ["model.bin"])
    _trace(tmp_path, tmp_path / ".trace", reads=["train.py"])
    found = analyse(tmp_path, stage, tmp_path / ".trace", before, after, None)
    assert found.changed == ["notes.txt"] and found.writes == []


def test_an_unreadable_record_means_the_trace_did_not_see_everything(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / ".trace").mkdir()
    (tmp_path / ".trace" / "0.json").write_text("{truncated")
    found = analyse(tmp_path, _stage(), tmp_path / ".trace", {}, {}, None)
    assert not found.traced
    shell = analyse(tmp_path, _stage(cmd="python train.py > log.txt"), tmp_path / ".trace",
                    {}, {}, None)
    assert not shell.traced


def _sandbox(root: Path, hermetic: Hermetic | None) -> Sandbox:
    stages = {"train": {"hermetic": hermetic.to_doc()}} if hermetic is not None else {}
    return Sandbox(root=root, scratch=root / ".scratch", environment={"stages": stages},
                   project=ProjectConfig(), all_outs=["model.bin"])


def test_hermetic_stage_fails_on_an_undeclared_read_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StageFailedError) as err:
        _sandbox(tmp_path, Hermetic()).judge(_stage(), Findings(reads=["secret.csv"]))
    assert ("stage 'train' is hermetic and read undeclared input(s) 'secret.csv'; add "
            "'- secret.csv' under stages.train.deps in dvc.yaml") in str(err.value)


def test_undeclared_reads_set_to_warn_only_warn_but_writes_still_fail(tmp_path: Path) -> None:
    box = _sandbox(tmp_path, Hermetic(undeclared_reads="warn"))
    warnings = box.judge(_stage(), Findings(reads=["secret.csv"]))
    assert warnings == ["stage 'train' read undeclared input(s) 'secret.csv'; add "
                        "'- secret.csv' under stages.train.deps in dvc.yaml"]
    with pytest.raises(StageFailedError, match="wrote undeclared output"):
        box.judge(_stage(), Findings(reads=["secret.csv"], writes=["notes.txt"]))


def test_adoption_mode_only_warns(tmp_path: Path) -> None:
    found = Findings(reads=["secret.csv"], writes=["notes.txt"], network=["example.com:443"])
    warnings = _sandbox(tmp_path, None).judge(_stage(), found)
    assert len(warnings) == 3
    assert any("used the network (example.com:443)" in w for w in warnings)


def test_network_is_fatal_when_hermetic_unless_allowed(tmp_path: Path) -> None:
    found = Findings(network=["example.com:443"])
    with pytest.raises(StageFailedError) as err:
        _sandbox(tmp_path, Hermetic()).judge(_stage(), found)
    assert "allow it with 'stages: {train: {network: true}}' in mlbuild.yaml" in str(err.value)
    assert _sandbox(tmp_path, Hermetic(network=True)).judge(_stage(), found) == []


def test_nothing_found_is_no_warning(tmp_path: Path) -> None:
    assert _sandbox(tmp_path, Hermetic()).judge(_stage(), Findings()) == []


def _bytecode_module() -> object:
    """The hook's bytecode module, loaded from its file (the hook folder is not a package)."""
    import importlib.util

    from mlbuild.sandbox.environ import HOOK_DIR

    spec = importlib.util.spec_from_file_location("_mlbuild_bytecode",
                                                  HOOK_DIR / "_mlbuild_bytecode.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_installed_code_keeps_its_bytecode_beside_the_source() -> None:
    check = _bytecode_module().installed_check  # type: ignore[attr-defined]
    plain = check("/work/proj/", ("/usr/", "/opt/venv/"))
    assert plain("/usr/lib/python3.11/json/__init__.py")
    assert plain("/opt/venv/lib/python3.11/site-packages/pandas/__init__.py")
    assert not plain("/work/proj/src/features.py")  # the project's code: the stage area
    assert not plain("/home/me/lib/on_pythonpath.py")  # neither installed nor the project's
    in_usr = check("/usr/src/proj/", ("/usr/",))  # a project inside the interpreter's prefix
    assert not in_usr("/usr/src/proj/stages/train.py")
    assert in_usr("/usr/lib/python3.11/json/__init__.py")
    venv_inside = check("/work/proj/", ("/usr/", "/work/proj/.venv/"))  # a venv in the project
    assert venv_inside("/work/proj/.venv/lib/python3.11/site-packages/rich/text.py")
    assert not venv_inside("/work/proj/stages/train.py")
