"""Fast paths of the benchmark's workloads keep their guarantees: the plain-shape schema check
accepts only what DVC's schema accepts, and a cold build of a plain pipeline or the first
no-op after it imports neither DVC nor (for the no-op) PyYAML."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

from mlbuild.dvcfmt.dvcbridge import schema_problems
from mlbuild.dvcfmt.plainschema import accepted_plainly
from tests.conftest import Project, _env

_VALUES: list[Any] = ["x.txt", "", 1, 0, True, False, None, 1.5, [], ["a"], ["a", 1], {},
                      {"a": 1}, {"a.txt": {"cache": False}}, {"a.txt": {"cache": "no"}},
                      {"a.txt": {"persist": True, "push": False}}, {"a.txt": None},
                      {"a.txt": {"bogus": True}}, {"a.txt": {}, "b.txt": {}},
                      {"params.yaml": ["lr"]}, {"remote": "r"}]
_KEYS = ["cmd", "deps", "outs", "params", "metrics", "plots", "wdir", "desc", "frozen",
         "always_changed", "meta", "vars", "matrix", "foreach", "do", "bogus"]


def _value(rng: random.Random) -> Any:
    if rng.random() < 0.5:
        return [rng.choice(_VALUES) for _ in range(rng.randint(0, 3))]
    return rng.choice(_VALUES)


def _stage(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(_VALUES)
    stage: dict[str, Any] = {"cmd": rng.choice(["echo", ["a", "b"], 1, None])}
    for key in rng.sample(_KEYS, rng.randint(0, 4)):
        stage[key] = _value(rng)
    return stage


def _doc(rng: random.Random) -> Any:
    doc: dict[Any, Any] = {"stages": {f"s{i}": _stage(rng) for i in range(rng.randint(0, 3))}}
    if rng.random() < 0.1:
        doc["stages"][1] = _stage(rng)  # a stage name that is not a string
    for key in ("params", "metrics", "plots", "vars", "artifacts", "bogus"):
        if rng.random() < 0.1:
            doc[key] = _value(rng)
    return doc


def test_plain_shapes_are_a_subset_of_what_dvc_accepts() -> None:
    rng = random.Random(10)
    plain = 0
    for _ in range(3000):
        doc = _doc(rng)
        if accepted_plainly(doc):
            plain += 1
            from dvc.schema import COMPILED_MULTI_STAGE_SCHEMA

            COMPILED_MULTI_STAGE_SCHEMA(doc)  # raises when DVC refuses what the check let by
    assert plain > 100  # the generator does reach the fast path


def test_shapes_dvc_refuses_still_get_dvcs_reason() -> None:
    for doc in ({"stages": {"a": {"cmd": "x", "outs": [{"o": {"cache": "no"}}]}}},
                {"stages": {"a": {"cmd": "x", "deps": "one.txt"}}},
                {"stages": {"a": {"cmd": "x", "frozen": "yes"}}},
                {"stages": {"a": {"deps": ["x"]}}}):
        assert not accepted_plainly(doc)
        assert schema_problems(doc), doc


def _imported(proj: Project, *args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlbuild", *args],
                          cwd=proj.path, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_cold_build_of_a_plain_pipeline_imports_no_dvc(project: Project) -> None:
    project.write("seed.txt", "seed\n")
    project.write("dvc.yaml", "stages:\n  copy:\n    cmd: cp seed.txt out.txt\n"
                  "    deps: [seed.txt]\n    outs: [out.txt]\n"
                  "  again:\n    cmd: cp out.txt out2.txt\n    deps: [out.txt]\n"
                  "    outs:\n    - out2.txt:\n        cache: false\n")
    assert not {"dvc", "voluptuous"} & _imported(project, "run")
    assert project.read("out2.txt") == "seed\n"
    assert "up to date" in project.dvc("status").stdout  # DVC reads what was written


def test_first_noop_after_a_build_reads_no_yaml(project: Project) -> None:
    project.write("seed.txt", "seed\n")
    project.write("params.yaml", "lr: 1.0e-05\nepochs: 3\nname: 'yes'\nflags: [true, null]\n")
    project.write("dvc.yaml", "stages:\n  copy:\n    cmd: cp seed.txt out.txt\n"
                  "    deps: [seed.txt]\n    params: [lr, epochs, name, flags]\n"
                  "    outs: [out.txt]\n")
    assert project.run("run").returncode == 0
    assert not {"yaml", "dvc"} & _imported(project, "run")
    from mlbuild.dvcfmt.memo import load_yaml_memo
    from mlbuild.dvcfmt.yamlio import load_yaml

    lock = project.path / "dvc.lock"  # the memo holds exactly what the file says
    memo = load_yaml_memo(lock, "dvc.lock", project.path / ".dvc/tmp/mlbuild/parsed")
    assert memo == load_yaml(lock, "dvc.lock")
    assert memo["stages"]["copy"]["params"]["params.yaml"]["lr"] == 1.0e-05
