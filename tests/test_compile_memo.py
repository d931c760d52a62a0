"""The compiler's memo never hides a change: what compiling reads is all in its key."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.scenario import new_project

PROJECT = {
    "stages/make.yaml": """
        cmd: python -m stages.make
        outs: [out.txt]
    """,
    "stages/__init__.py": "",
    "stages/make.py": """
        try:
            import helpermod  # a project module that may not exist yet
        except ImportError:
            helpermod = None
        open("out.txt", "w").write("with" if helpermod else "without")
    """,
}


def _deps(root: Path) -> list[str]:
    doc = yaml.safe_load((root / "dvc.yaml").read_text())
    return list(doc["stages"]["make"].get("deps") or [])


def test_a_new_module_that_an_import_now_finds_recompiles(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PROJECT)
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "without"
    assert "helpermod.py" not in _deps(proj.path)
    proj.write("helpermod.py", "X = 1\n")  # no tracked file changed, only the folder
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr
    assert "helpermod.py" in _deps(proj.path)
    assert proj.read("out.txt") == "with"


def test_a_new_declaration_and_a_hand_edit_of_dvc_yaml_recompile(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", PROJECT)
    assert proj.run("run").returncode == 0
    proj.write("stages/copy.yaml", "cmd: cp out.txt copy.txt\ndeps: [out.txt]\n"
                                   "outs: [copy.txt]\n")
    assert proj.run("run").returncode == 0
    assert proj.read("copy.txt") == "without"
    generated = proj.read("dvc.yaml")
    (proj.path / "dvc.yaml").write_text(generated.replace("cp out.txt", "cp  out.txt"))
    assert proj.run("run").returncode == 0
    assert proj.read("dvc.yaml") == generated  # regenerated, not trusted from the memo
