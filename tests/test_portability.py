"""The tool is environment wherever it is imported from; verify on every supported Python."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

import mlbuild
from tests.conftest import copy_example


def test_a_copy_of_mlbuild_inside_the_project_is_the_tool_not_undeclared_input(
        tmp_path: Path, stage_homes: Path) -> None:
    """A clone of mlbuild's own repository imports its own mlbuild/ in the stages, not the
    installed one: that copy is the tool, recorded by version in the environment file."""
    example = copy_example(tmp_path / "example", stage_homes)
    shutil.copytree(Path(mlbuild.__file__).parent, example.path / "mlbuild",
                    ignore=shutil.ignore_patterns("__pycache__"))
    example.git("add", "-A")
    example.git("commit", "-qm", "the tool's source beside the example")
    proc = example.run("run")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "undeclared" not in proc.stderr + proc.stdout
    env = yaml.safe_load(example.read(".mlbuild/environment.yaml"))
    for stage in ("prepare", "train", "evaluate"):
        packages = env["stages"][stage]["packages"]
        assert packages["mlbuild"] == mlbuild.__version__
        assert "dvc" not in packages  # the tool's own requirements are not the stage's
