"""Malformed input of every kind is exit 2 naming file, line and key; stage names and commands
behave as DVC's own rules say."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.errcheck import (
    CHAIN,
    CHAIN_OUTS,
    DECL,
    error_line,
    make_chain,
    snapshot,
)
from tests.scenario import new_project

KEEP = (*CHAIN_OUTS, "dvc.yaml", "params.yaml")
PWNED = "mlbuild-tag-was-constructed"
TAG = f"!!python/object/apply:os.system ['touch {PWNED}']"


@pytest.fixture(scope="session")
def chain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's chain_template with raw/ tracked by raw.dvc (chain in this module copies
    this one)."""
    proj = make_chain(tmp_path_factory.mktemp("chain") / "proj")
    proj.write("raw/a.txt", "raw data\n")
    assert proj.dvc("add", "raw").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "raw data")
    return proj.path


def bad(proj: Project, *needles: str, files: tuple[str, ...] = KEEP,
        args: tuple[str, ...] = ("run",)) -> str:
    """`mlbuild ARGS` exits 2 with one error line naming every needle, and changes nothing."""
    before = snapshot(proj, *files)
    line = error_line(proj.run(*args), 2, *needles)
    assert snapshot(proj, *files) == before
    assert not (proj.path / PWNED).exists()
    return line


# -- item 8: every file mlbuild reads: syntax errors and tags -----------------------------------

HYDRA_CONFIG = """
defaults:
  - _self_
  - model: small
train:
  lr: 0.1
"""


@pytest.fixture
def hydra(tmp_path: Path) -> Project:
    """A declared stage whose params come from configs/ through Hydra."""
    proj = new_project(tmp_path / "hydra", {
        "configs/config.yaml": HYDRA_CONFIG,
        "configs/model/small.yaml": "name: small\nsize: 1\n",
        "configs/model/big.yaml": "name: big\nsize: 9\n",
        "stages/x.yaml": "cmd: echo ${model.name} > out.txt\nparams: [model]\nouts: [out.txt]\n",
    })
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("out.txt") == "small\n"
    return proj


@pytest.mark.parametrize(("rel", "text", "where"), [
    ("configs/config.yaml", "train: {lr: 0.1\n", "configs/config.yaml:5:1"),
    ("configs/config.yaml", f"train: {TAG}\n", "configs/config.yaml:4:8"),
    ("configs/model/small.yaml", "name: [small\n", "configs/model/small.yaml:2:1"),
    ("configs/model/small.yaml", f"name: {TAG}\n", "configs/model/small.yaml:1:7"),
])
def test_malformed_hydra_config_is_bad_input(hydra: Project, rel: str, text: str,
                                             where: str) -> None:
    if rel.endswith("config.yaml"):
        text = hydra.read(rel).replace("train:\n  lr: 0.1\n", text)
    hydra.write(rel, text)
    line = bad(hydra, where, files=("out.txt", "params.yaml", "dvc.yaml"))
    assert "internal error" not in line


def test_malformed_group_option_chosen_by_an_override(hydra: Project) -> None:
    hydra.write("configs/model/big.yaml", "name: big\n  size: 9\n")
    bad(hydra, "configs/model/big.yaml:2:", files=("out.txt", "params.yaml"),
        args=("run", "model=big"))


@pytest.mark.parametrize(("rel", "text", "where"), [
    ("dvc.yaml", "stages: {\n", "dvc.yaml:2:1"),
    ("dvc.yaml", f"stages: {TAG}\n", "dvc.yaml:1:9"),
    ("dvc.lock", "schema: '2.0'\nstages: [\n", "dvc.lock:3:1"),
    ("dvc.lock", f"schema: '2.0'\nstages: {TAG}\n", "dvc.lock:2:9"),
    ("params.yaml", "train: {lr: 0.1\n", "params.yaml:2:1"),
    ("params.yaml", f"train: {TAG}\n", "params.yaml:1:8"),
    ("raw.dvc", "outs:\n- md5: [\n", "raw.dvc:3:1"),
    ("raw.dvc", f"outs: {TAG}\n", "raw.dvc:1:7"),
])
def test_every_yaml_file_kind_names_file_line_and_column(chain: Project, rel: str, text: str,
                                                        where: str) -> None:
    (chain.path / rel).write_text(text)
    for args in (("run",), ("status",)):
        bad(chain, where, files=tuple(f for f in KEEP if f != rel), args=args)


@pytest.mark.parametrize(("text", "words"), [
    ("strict: [\n", "mlbuild.yaml:2:1"),
    (f"strict: {TAG}\n", "mlbuild.yaml:1:9"),
    ("strict: maybe\n", "mlbuild.yaml"),
])
def test_malformed_mlbuild_yaml(chain: Project, text: str, words: str) -> None:
    chain.write("mlbuild.yaml", text)
    bad(chain, words, args=("run", "--force"))


@pytest.mark.parametrize(("text", "words"), [
    ("outs:\n- md5: abc\n  size: lots\n  path: raw\n", ("raw.dvc", "size")),
    ("outs: 5\n", ("raw.dvc", "outs")),
    ("outs:\n- just-a-string\n", ("raw.dvc", "outs")),
])
def test_wrong_types_in_a_dvc_file(chain: Project, text: str, words: tuple[str, ...]) -> None:
    chain.write("raw.dvc", text)
    for args in (("run",), ("status",)):
        bad(chain, *words, args=args)


@pytest.mark.parametrize(("old", "new", "words"), [
    ("md5: ", "md5: [1]\n      was: ", ("dvc.lock:", "stages.prepare.deps.0.md5", "expected str")),
    ("size: ", "size: lots\n      was: ", ("dvc.lock:", "size", "expected int")),
    ("cmd: ", "cmd: {a: 1}\n    was: ", ("dvc.lock:4:", "stages.prepare.cmd")),
])
def test_wrong_types_in_dvc_lock(chain: Project, old: str, new: str,
                                 words: tuple[str, ...]) -> None:
    chain.write("dvc.lock", chain.read("dvc.lock").replace(old, new, 1))
    for args in (("run",), ("status",)):
        bad(chain, *words, files=CHAIN_OUTS, args=args)


@pytest.mark.parametrize(("suffix", "text", "words"), [
    ("json", '{"lr": 0.1,,}', "extra.json:1:"),
    ("toml", "lr = = 1\n", "extra.toml"),
])
def test_malformed_json_and_toml_params(chain: Project, suffix: str, text: str,
                                        words: str) -> None:
    chain.write(f"extra.{suffix}", text)
    chain.write("dvc.yaml", CHAIN.replace("params: [train.lr]",
                                          f"params: [train.lr, {{extra.{suffix}: [lr]}}]"))
    bad(chain, words)


# -- item 9: stage names DVC refuses ------------------------------------------------------------

@pytest.mark.parametrize("name", ["a@b", "a:b", "a/b", "a\\\\b"])
def test_stage_name_dvc_refuses_in_dvc_yaml(chain: Project, name: str) -> None:
    chain.write("dvc.yaml", CHAIN.replace("  report:", f'  "{name}":'))
    line = bad(chain, "dvc.yaml:15:3", "may not contain")
    assert name.replace("\\\\", "\\") in line


@pytest.mark.parametrize("name", ["a.b", "a+b"])
def test_other_punctuation_runs_in_a_hand_written_dvc_yaml_as_under_dvc_repro(
        chain: Project, name: str) -> None:
    """`dvc stage add` refuses these names but `dvc repro` runs them: so does mlbuild."""
    chain.write("dvc.yaml", CHAIN.replace("  report:", f'  "{name}":'))
    proc = chain.run("run")
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in chain.dvc("status").stdout


@pytest.mark.parametrize("stem", ["a@b", "a:b", "a.b", "x+y"])
def test_stage_name_dvc_refuses_in_a_declaration_file_name(declared: Project,
                                                          stem: str) -> None:
    shutil.copy(declared.path / "stages/x.yaml", declared.path / f"stages/{stem}.yaml")
    (declared.path / f"stages/{stem}.yaml").write_text(DECL.replace("x.txt", "y.txt"))
    bad(declared, f"stages/{stem}.yaml", "punctuation", files=("x.txt", "dvc.yaml"))


def test_the_name_rule_is_dvcs() -> None:
    from dvc.stage import INVALID_STAGENAME_CHARS

    from mlbuild.pipeline.model import INVALID_NAME_CHARS

    assert set(INVALID_NAME_CHARS) == INVALID_STAGENAME_CHARS


def test_foreach_members_and_dashes_are_fine(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": """
        stages:
          make-it_1:
            foreach: [a, b]
            do:
              cmd: echo ${item} > ${item}.txt
              outs: ["${item}.txt"]
    """})
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("b.txt") == "b\n"


# -- item 10: a multi-line cmd runs as DVC runs it ----------------------------------------------

MULTI = """
stages:
  multi:
    cmd: |
      cd sub
      pwd > where.txt
      false
      echo after > after.txt
    outs: [where.txt]
"""
MULTI_DECL = """
cmd: |
  cd sub
  pwd > where.txt
  false
  echo after > after.txt
outs: [where.txt]
"""


@pytest.mark.parametrize("kind", ["dvc.yaml", "stages"])
def test_multi_line_cmd_runs_each_line_on_its_own(tmp_path: Path, kind: str) -> None:
    files = {"sub/keep.txt": "x\n"}
    if kind == "dvc.yaml":
        files["dvc.yaml"] = MULTI
    else:
        files["stages/multi.yaml"] = MULTI_DECL
    proj = new_project(tmp_path / "p", files)
    proc = proj.run("run")
    # each line is its own shell: 'cd sub' does not carry over, and 'false' stops the stage
    assert proc.returncode == 1, proc.stderr
    assert "stage 'multi' failed" in proc.stderr
    assert not (proj.path / "after.txt").exists()
    assert not (proj.path / "where.txt").exists()  # a failed stage's output is not kept
    assert not (proj.path / "sub/where.txt").exists()
    proj.write(kind if kind == "dvc.yaml" else "stages/multi.yaml",
               proj.read(kind if kind == "dvc.yaml" else "stages/multi.yaml")
               .replace("false\n", ""))
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("where.txt").strip() == str(proj.path)
    assert proj.read("after.txt") == "after\n"


# -- item 7: value types, checked by DVC's own schema -------------------------------------------

@pytest.mark.parametrize(("old", "new", "words"), [
    ("  - x.txt\n", "  - x.txt: {cache: maybe}\n", ("stages/x.yaml:5:", "outs[0].x.txt.cache",
                                                      "expected bool", "'maybe'")),
    ("  - x.txt\n", "  - x.txt: {persist: \"yes\"}\n", ("stages/x.yaml:5:", "persist",
                                                          "expected bool")),
    ("  - x.txt\n", "  - x.txt: {cache: \"false\"}\n", ("stages/x.yaml:5:", "cache", "bool")),
    ("  - x.txt\n", "  - x.txt\nmetrics:\n  - m.json: {cache: 1}\n",
     ("stages/x.yaml:7:", "metrics[0].m.json.cache", "expected bool")),
    ("cmd:", "desc: [1, 2]\ncmd:", ("stages/x.yaml:1:7", "desc", "expected str")),
])
def test_wrong_value_types_in_a_declaration(declared: Project, old: str, new: str,
                                            words: tuple[str, ...]) -> None:
    declared.write("stages/x.yaml", DECL.replace(old, new))
    for args in (("run",), ("compile",), ("status",)):
        line = bad(declared, *words, files=("x.txt", "dvc.yaml"), args=args)
        assert "DVC" in line
    assert declared.dvc("status").returncode == 0  # dvc.yaml was never broken


@pytest.mark.parametrize(("old", "new", "words"), [
    ("deps:\n  - data.txt\n", "deps: data.txt\n", ("stages/x.yaml:2:7", "deps", "a list")),
    ("  - data.txt\n", "  - data.txt\n  - {a: 1, b: 2}\n", ("stages/x.yaml:4:5", "deps[1]")),
    ("deps:", "dpes:", ("stages/x.yaml:2:1", "'dpes'", "did you mean 'deps'")),
    ("cmd: python stages/x.py", "cmd: [python]", ("stages/x.yaml:1:6", "'cmd'")),
])
def test_declaration_structure_errors_name_the_line(declared: Project, old: str, new: str,
                                                    words: tuple[str, ...]) -> None:
    declared.write("stages/x.yaml", DECL.replace(old, new))
    bad(declared, *words, files=("x.txt", "dvc.yaml"))


@pytest.mark.parametrize(("old", "new", "words"), [
    ("outs: [report.txt]", "outs:\n      - report.txt: {cache: maybe}",
     ("dvc.yaml:", "stages.report.outs[0].report.txt.cache", "expected bool")),
    ("outs: [report.txt]", "outs: [report.txt]\n    frozen: \"no\"",
     ("dvc.yaml:18:13", "stages.report.frozen", "expected bool")),
    ("outs: [report.txt]", "outs: [report.txt]\n    desc: [1, 2]",
     ("dvc.yaml:18:11", "desc", "expected str")),
])
def test_hand_written_dvc_yaml_refused_by_dvcs_schema(chain: Project, old: str, new: str,
                                                      words: tuple[str, ...]) -> None:
    chain.write("dvc.yaml", CHAIN.replace(old, new))
    dvc = chain.dvc("status")
    assert dvc.returncode != 0 and "validation failed" in dvc.stderr  # DVC refuses it too
    for args in (("run",), ("status",)):
        bad(chain, *words, files=CHAIN_OUTS, args=args)


def test_schema_is_checked_once_per_change_of_dvc_yaml(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace("outs: [report.txt]", "outs: [report.txt]\n"
                                          "    desc: report"))
    assert chain.run("run").returncode == 0
    proc = chain.run("-v", "run", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "dvc.schema" not in proc.stderr and "voluptuous" not in proc.stderr


# -- issue 9 item 9: file names of 252-255 bytes ------------------------------------------------

@pytest.mark.parametrize("length", [252, 255])
def test_longest_legal_file_names_build_like_dvc(tmp_path: Path, length: int) -> None:
    out = "o" * (length - 4) + ".txt"
    dep = "d" * (length - 4) + ".txt"
    stage = "s" * length
    proj = new_project(tmp_path / "p", {dep: "v1\n", "dvc.yaml": f"""
        stages:
          {stage}:
            cmd: cat {dep} > {out}
            deps: [{dep}]
            outs: [{out}]
    """})
    for _ in range(2):  # a first build, then a rebuild that moves the old output aside
        proc = proj.run("run")
        assert proc.returncode == 0, proc.stderr
        assert proj.run("status").returncode == 0
        proj.write(dep, proj.read(dep) + "more\n")
    (proj.path / out).unlink()
    proj.write(dep, "v1\n")
    proc = proj.run("run")  # the first build again: checked out of the run-cache
    assert proc.returncode == 0, proc.stderr
    assert proj.read(out) == "v1\n"
    assert not [p.name for p in proj.path.iterdir() if p.name.endswith(".tmp")]
    assert "up to date" in proj.dvc("status").stdout


# -- issue 9 item 11: override values reach the shell as data -----------------------------------

def test_override_values_are_quoted_in_a_declared_cmd(hydra: Project) -> None:
    for value in ("$(touch pwned)", "a; touch pwned2", "it's `touch pwned3`"):
        proc = hydra.run("run", f"model.name={value!r}")
        assert proc.returncode == 0, proc.stderr
        assert hydra.read("out.txt") == value + "\n"
    assert not [p for p in hydra.path.iterdir() if p.name.startswith("pwned")]
    assert "up to date" in hydra.dvc("status").stdout  # DVC runs the same quoted command
    proc = hydra.run("run")
    assert proc.returncode == 0, proc.stderr
    assert hydra.read("out.txt") == "small\n"


def test_interpolating_a_missing_key_names_the_declaration(hydra: Project) -> None:
    hydra.write("stages/x.yaml", hydra.read("stages/x.yaml").replace("model.name", "model.nme"))
    bad(hydra, "stages/x.yaml", "model.nme", files=("out.txt", "dvc.yaml"))


def test_hand_written_cmd_runs_as_dvc_does_and_warns(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {
        "params.yaml": "model:\n  name: $(touch made-by-shell)\n",
        "dvc.yaml": """
            stages:
              s:
                cmd: echo ${model.name} > out.txt
                outs: [out.txt]
        """,
    })
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr
    assert (proj.path / "made-by-shell").exists()  # exactly what dvc repro does
    assert "shell metacharacters" in proc.stderr + proc.stdout
    assert "${model.name}" in proc.stderr + proc.stdout


def test_unquoted_override_error_names_the_override(hydra: Project) -> None:
    line = bad(hydra, "override 'model.name=$(touch x)'", files=("out.txt", "params.yaml"),
               args=("run", "model.name=$(touch x)"))
    assert "configs/" not in line
    assert not (hydra.path / "x").exists()
