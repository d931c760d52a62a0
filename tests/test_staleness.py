"""Staleness reasons carry a kind: code apart from data, params, cmd, outputs (in-process)."""

from __future__ import annotations

from pathlib import Path

from mlbuild import api
from mlbuild.engine.staleness import Why, dep_kind
from tests.scenario import new_project

PIPELINE = {
    "helper.py": "X = 1\n",
    "data.txt": "abc\n",
    "params.yaml": "n: 1\n",
    "dvc.yaml": """
        stages:
          make:
            cmd: python helper.py && cp data.txt out.txt
            deps: [helper.py, data.txt]
            params: [n]
            outs: [out.txt]
    """,
}


def _kinds(root: Path) -> set[str]:
    (verdict,) = api.status(root)
    return {str(w["kind"]) for w in verdict.why}


def test_reason_kinds_tell_code_data_params_and_outputs_apart(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PIPELINE)
    assert _kinds(proj.path) == {"new"}
    assert proj.run("run").returncode == 0
    assert _kinds(proj.path) == set()
    proj.write("helper.py", "X = 2\n")
    assert _kinds(proj.path) == {"code"}
    proj.write("data.txt", "xyz\n")
    assert _kinds(proj.path) == {"code", "data"}
    proj.write("helper.py", "X = 1\n")
    proj.write("data.txt", "abc\n")
    proj.write("params.yaml", "n: 2\n")
    assert _kinds(proj.path) == {"params"}
    proj.write("params.yaml", "n: 1\n")
    (proj.path / "out.txt").unlink()
    (verdict,) = api.status(proj.path)
    assert verdict.why == [{"kind": "outs", "path": "out.txt",
                            "detail": "output 'out.txt' deleted"}]


def test_status_json_lists_what_changed(tmp_path: Path) -> None:
    import json

    proj = new_project(tmp_path / "p", PIPELINE)
    assert proj.run("run").returncode == 0
    proj.write("helper.py", "X = 3\n")
    (stage,) = json.loads(proj.run("status", "--json").stdout)["stages"]
    assert stage["changed"] == ["code"]
    assert stage["reasons"] == ["dependency 'helper.py' modified"]


def test_dep_kind() -> None:
    assert dep_kind("stages/train.py") is Why.CODE
    assert dep_kind("data/raw") is Why.DATA
    assert dep_kind("data/train.csv") is Why.DATA
