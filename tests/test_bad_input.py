"""Bad input exits 2 with one 'mlbuild: error:' line naming the fault, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project
from tests.errcheck import (
    CHAIN,
    CHAIN_OUTS,
    DECL,
    TRAIN_CMD,
    error_line,
    snapshot,
)

KEEP = (*CHAIN_OUTS, "dvc.yaml", "params.yaml")


def bad_run(proj: Project, *needles: str, files: tuple[str, ...] = KEEP,
            args: tuple[str, ...] = ("run",)) -> str:
    """`mlbuild ARGS` must exit 2 with one error line and leave *files*, lock and cache as is."""
    before = snapshot(proj, *files)
    line = error_line(proj.run(*args), 2, *needles)
    assert snapshot(proj, *files) == before
    return line


# -- YAML syntax ----------------------------------------------------------------------------


def test_malformed_dvc_yaml_names_file_and_line(chain: Project) -> None:
    chain.write("dvc.yaml", "stages:\n  prepare:\n    cmd: cp a b\n   outs: [b\n")
    bad_run(chain, "dvc.yaml:4:", "malformed YAML")


def test_malformed_declaration_names_file_and_line(declared: Project) -> None:
    declared.write("stages/x.yaml", "cmd: python stages/x.py\nouts:\n  - x.txt\n  bad: [\n")
    bad_run(declared, "stages/x.yaml:4:", "malformed YAML", files=("x.txt", "dvc.yaml"))


def test_non_utf8_dvc_yaml_is_bad_input(chain: Project) -> None:
    (chain.path / "dvc.yaml").write_bytes(b"stages:\n  a:\n    cmd: echo \xff\n")
    bad_run(chain, "dvc.yaml", "UTF-8")


def test_duplicate_stage_name_is_refused(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN + "  train:\n    cmd: echo again\n")
    bad_run(chain, "dvc.yaml:", "duplicate key 'train'")


# -- unknown and misspelt keys ---------------------------------------------------------------


def test_misspelt_stage_key_in_dvc_yaml(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace("outs: [report.txt]", "outz: [report.txt]"))
    bad_run(chain, "dvc.yaml", "stage 'report'", "'outz'", "did you mean 'outs'")


def test_misspelt_key_in_declaration(declared: Project) -> None:
    declared.write("stages/x.yaml", DECL.replace("deps:", "dpes:"))
    bad_run(declared, "stages/x.yaml", "'dpes'", "did you mean 'deps'",
            files=("x.txt", "dvc.yaml"))


def test_misspelt_out_option_in_dvc_yaml(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace("outs: [report.txt]",
                                          "outs:\n      - report.txt: {cahce: false}"))
    bad_run(chain, "dvc.yaml", "report.txt", "'cahce'", "did you mean 'cache'")


def test_misspelt_out_option_in_declaration_names_the_declaration(declared: Project) -> None:
    declared.write("stages/x.yaml", DECL.replace("- x.txt", "- x.txt: {cahce: false}"))
    line = bad_run(declared, "stages/x.yaml", "'cahce'", "did you mean 'cache'",
                   files=("x.txt", "dvc.yaml"))
    assert "dvc.yaml" not in line.replace("stages/x.yaml", "")


# -- the graph -------------------------------------------------------------------------------


def test_cycle_names_the_stages(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace("deps: [data.txt]", "deps: [data.txt, metrics.txt]"))
    line = bad_run(chain, "cycle")
    for stage in ("prepare", "train", "evaluate"):
        assert stage in line


def test_two_stages_declaring_one_output(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace("outs: [report.txt]", "outs: [model.txt]"))
    bad_run(chain, "'model.txt'", "'train'", "'report'")


def test_dependency_that_nothing_produces(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace("deps: [model.txt]", "deps: [model.txt, labels.csv]"))
    bad_run(chain, "stage 'evaluate'", "'labels.csv'", "does not exist")


@pytest.mark.parametrize(("path", "words"), [
    ("../outside.txt", "outside the project"),
    ("/tmp/mlbuild-absolute.txt", "absolute"),
])
def test_output_outside_the_project(chain: Project, path: str, words: str) -> None:
    chain.write("dvc.yaml", CHAIN.replace("echo report v1 > report.txt", f"echo x > {path}")
                .replace("outs: [report.txt]", f"outs: [{path}]"))
    bad_run(chain, "stage 'report'", f"'{path}'", words)
    assert not Path(path).exists()
    assert not (chain.path.parent / "outside.txt").exists()


# -- the command line ------------------------------------------------------------------------


def test_unknown_stage_target_suggests_the_closest(chain: Project) -> None:
    bad_run(chain, "unknown stage 'trian'", "did you mean 'train'", args=("run", "trian"))


@pytest.mark.parametrize(("args", "words"), [
    (("run", "--bogus"), "--bogus"),
    (("run", "--jobs", "many"), "--jobs"),
    (("stauts",), "did you mean 'status'"),
])
def test_command_line_mistakes_are_one_line(chain: Project, args: tuple[str, ...],
                                            words: str) -> None:
    line = bad_run(chain, args=args)
    assert words.lower() in line.lower()


def test_verbose_adds_the_traceback(chain: Project) -> None:
    proc = chain.run("run", "trian", "--verbose")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("mlbuild: error: unknown stage")


# -- params ----------------------------------------------------------------------------------


def test_declared_param_missing_from_params_yaml(chain: Project) -> None:
    chain.write("dvc.yaml", CHAIN.replace(TRAIN_CMD, "echo changed > model.txt")
                .replace("params: [train.lr]", "params: [train.lr, train.epoch]"))
    bad_run(chain, "stage 'train'", "'train.epoch'", "params.yaml", "did you mean 'train.epochs'")


def test_malformed_params_yaml(chain: Project) -> None:
    chain.write("params.yaml", "train:\n  lr: [0.1\n")
    bad_run(chain, "params.yaml:", "malformed YAML")


def test_malformed_params_yaml_in_status(chain: Project) -> None:
    chain.write("params.yaml", "train: {lr: 0.1\n")
    bad_run(chain, "params.yaml:", args=("status",))


def test_hydra_override_of_a_missing_key(example: Project) -> None:
    before = example.read("params.yaml")
    proc = example.run("run", "model.nope=1")
    error_line(proc, 2, "configs/", "model.nope")
    assert example.read("params.yaml") == before
    assert not (example.path / "dvc.lock").exists()
    assert not (example.path / "models").exists()


def test_hydra_override_typo_suggests_the_key(example: Project) -> None:
    proc = example.run("run", "model.learnin_rate=0.5")
    error_line(proc, 2, "model.learnin_rate", "did you mean 'model.learning_rate'")
    proc = example.run("run", "modle.name=logreg")  # the misspelt part is a group
    error_line(proc, 2, "modle.name", "did you mean 'model.name'")


# -- compile ---------------------------------------------------------------------------------


def test_compile_check_reports_out_of_date_dvc_yaml(declared: Project) -> None:
    assert declared.run("compile", "--check").returncode == 0
    generated = declared.read("dvc.yaml")
    declared.write("stages/x.yaml", DECL + "desc: upper-case the data\n")
    proc = declared.run("compile", "--check")
    error_line(proc, 1, "dvc.yaml", "out of date", "mlbuild compile")
    assert declared.read("dvc.yaml") == generated
    assert declared.run("compile").returncode == 0
    assert declared.run("compile", "--check").returncode == 0


@pytest.mark.parametrize("args", [("compile", "--check"), ("compile",), ("run",)])
def test_hand_written_dvc_yaml_beside_declarations(chain: Project,
                                                   args: tuple[str, ...]) -> None:
    chain.write("stages/x.yaml", DECL)
    bad_run(chain, "dvc.yaml", "hand-written", "stages/", args=args)
    assert chain.read("dvc.yaml") == CHAIN.lstrip("\n")
