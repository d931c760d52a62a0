"""Data contracts: pandera schemas on stage inputs and outputs, compiled into dvc.yaml."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import Project

PREPARED = ("data/prepared/train.csv", "data/prepared/valid.csv")


def md5(proj: Project, rel: str) -> str:
    return hashlib.md5((proj.path / rel).read_bytes()).hexdigest()


def snapshot(proj: Project) -> dict[str, object]:
    """dvc.lock bytes, every file in the cache (objects and run-cache) and the prepared data."""
    cache = proj.path / ".dvc/cache"
    return {
        "lock": (proj.path / "dvc.lock").read_bytes(),
        "cache": sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()),
        "prepared": {rel: md5(proj, rel) for rel in PREPARED},
    }


def run_report(proj: Project, *args: str) -> tuple[int, dict[str, dict[str, object]]]:
    proc = proj.run("run", "--json", *args)
    stages = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    return proc.returncode, stages


def set_contract(proj: Project, side: str, path: str, ref: str) -> None:
    """Point one contract of stages/prepare.yaml at another schema."""
    decl = proj.path / "stages/prepare.yaml"
    data = yaml.safe_load(decl.read_text())
    data["contracts"][side][path] = ref
    decl.write_text(yaml.safe_dump(data, sort_keys=False))


def stage_deps(proj: Project, stage: str) -> list[str]:
    return list(yaml.safe_load(proj.read("dvc.yaml"))["stages"][stage]["deps"])


def test_contracts_compile_into_meta_and_their_schema_files_into_deps(example: Project) -> None:
    assert example.run("compile").returncode == 0
    prepare = yaml.safe_load(example.read("dvc.yaml"))["stages"]["prepare"]
    contracts = prepare["meta"]["mlbuild"]["contracts"]
    assert contracts["inputs"] == {"data/raw/train.csv": "stages.schemas:raw_schema"}
    assert set(contracts["outputs"]) == set(PREPARED)
    assert "stages/schemas.py" in prepare["deps"]
    assert example.dvc("stage", "list").returncode == 0  # DVC accepts the meta block


def test_output_violation_fails_the_stage_and_commits_nothing(example_built: Project) -> None:
    code = example_built.path / "stages/prepare.py"
    text = code.read_text()
    assert "schema.validate(part).to_csv(" in text
    # the stage's own check passes; then it writes an out-of-range pixel
    code.write_text(text.replace("schema.validate(part).to_csv(",
                                 "schema.validate(part).assign(pixel5=99.0).to_csv("))
    before = snapshot(example_built)
    code_, stages = run_report(example_built)
    assert code_ == 1
    assert stages["prepare"]["outcome"] == "failed"
    message = str(stages["prepare"]["message"])
    assert "data/prepared/" in message and "'pixel5'" in message
    assert "in_range" in message and "99.0" in message
    assert "\n" not in message
    assert stages["train"]["outcome"] == "skipped"
    assert stages["evaluate"]["outcome"] == "skipped"
    assert snapshot(example_built) == before  # lock, cache and previous outputs untouched
    assert example_built.run_json("status")["up_to_date"] is False


def test_input_violation_fails_before_the_stage_runs(example_built: Project) -> None:
    raw = example_built.path / "data/raw/train.csv"
    lines = raw.read_text().splitlines()
    lines[5] = "12" + lines[5][lines[5].index(","):]  # label 12: the raw schema allows 0..9
    raw.chmod(0o644)
    raw.write_text("\n".join(lines) + "\n")
    before = snapshot(example_built)
    log = example_built.path / ".dvc/tmp/mlbuild/logs/prepare.out"
    log.unlink(missing_ok=True)
    code, stages = run_report(example_built)
    assert code == 1
    message = str(stages["prepare"]["message"])
    assert "input 'data/raw/train.csv'" in message and "'label'" in message and "12" in message
    assert not log.exists()  # the command never started
    assert snapshot(example_built) == before


def test_yaml_schema_contract(example_built: Project) -> None:
    dump = subprocess.run(
        [sys.executable, "-c",
         "from stages.schemas import prepared_contract; print(prepared_contract().to_yaml())"],
        cwd=example_built.path, capture_output=True, text=True, check=True)
    schema = example_built.write("schemas/prepared.yaml", dump.stdout)
    set_contract(example_built, "outputs", "data/prepared/valid.csv", "schemas/prepared.yaml")
    status = example_built.run_json("status")["stages"][0]  # type: ignore[index]
    assert any("schemas/prepared.yaml" in r for r in status["reasons"]), status
    code, stages = run_report(example_built)
    assert code == 0
    assert stages["prepare"]["outcome"] == "ran"
    assert stages["train"]["outcome"] == "up-to-date"  # same prepared bytes
    assert "schemas/prepared.yaml" in stage_deps(example_built, "prepare")

    schema.write_text(schema.read_text().replace("max_value: 16.0", "max_value: 0.5"))
    before = snapshot(example_built)
    code, stages = run_report(example_built)
    assert code == 1
    message = str(stages["prepare"]["message"])
    assert "data/prepared/valid.csv" in message and "schemas/prepared.yaml" in message
    assert "column 'pixel" in message
    assert snapshot(example_built) == before


def test_editing_a_schema_module_makes_the_stage_stale(example_built: Project) -> None:
    example_built.write("stages/quality.py", '''
        """A stricter contract for the prepared data, used only by the contract."""

        from stages.schemas import prepared_schema


        def normalised():
            """Pixels in [0, 1]."""
            return prepared_schema(normalised=True)
        ''')
    set_contract(example_built, "outputs", "data/prepared/train.csv", "stages.quality:normalised")
    code, stages = run_report(example_built)
    assert code == 0, stages
    assert stages["prepare"]["outcome"] == "ran"
    assert "stages/quality.py" in stage_deps(example_built, "prepare")
    assert "stages/quality.py" not in stage_deps(example_built, "train")
    assert example_built.run_json("status")["up_to_date"] is True

    quality = example_built.path / "stages/quality.py"
    quality.write_text(quality.read_text().replace("normalised=True", "normalised=False"))
    report = {s["stage"]: s for s in example_built.run_json("status")["stages"]}  # type: ignore[attr-defined]
    assert report["prepare"]["stale"] is True
    assert any("stages/quality.py" in r for r in report["prepare"]["reasons"]), report
    assert report["train"]["stale"] is False


@pytest.mark.parametrize(("ref", "expected"), [
    ("stages.schemas:raw_shema", "did you mean 'raw_schema'"),
    ("stages.nosuchmodule:raw_schema", "module not found"),
    ("stages.schemas", "package.module:attribute"),
    ("schemas/missing.yaml", "does not exist"),
])
def test_bad_contract_reference_is_bad_input(example: Project, ref: str, expected: str) -> None:
    before = example.read("dvc.yaml")
    set_contract(example, "inputs", "data/raw/train.csv", ref)
    for command in (("status",), ("run",)):
        proc = example.run(*command)
        assert proc.returncode == 2, proc.stderr + proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("mlbuild: error: stages/prepare.yaml")
        assert ref in lines[0] and expected in lines[0]
    assert example.read("dvc.yaml") == before
    assert not (example.path / "dvc.lock").exists()


def test_bad_project_contract_reference_is_bad_input(example: Project) -> None:
    config = example.path / "mlbuild.yaml"
    config.write_text(config.read_text().replace("stages.schemas:raw_schema", "raw_schema"))
    proc = example.run("status")
    assert proc.returncode == 2
    assert "mlbuild.yaml.contracts.data/raw/train.csv" in proc.stderr


def test_a_schema_that_is_not_a_schema_fails_before_the_command_runs(project: Project) -> None:
    project.write("quality.py", "NOT_A_SCHEMA = 3\n")
    project.write("stages/mk.py", """
        from pathlib import Path

        Path(".dvc/tmp/ran").write_text("yes")
        Path("o.csv").write_text("a\\n1\\n")
    """)
    project.write("stages/mk.yaml", """
        cmd: python stages/mk.py
        outs: [o.csv]
        contracts:
          outputs:
            o.csv: quality:NOT_A_SCHEMA
    """)
    code, stages = run_report(project)
    assert code == 1
    assert "is not a pandera DataFrameSchema" in str(stages["mk"]["message"])
    assert not (project.path / ".dvc/tmp/ran").exists()  # the command never started
    assert not (project.path / "o.csv").exists()
