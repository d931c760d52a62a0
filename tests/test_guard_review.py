"""Review findings 5 and 6 on the hermetic write guard: put-back blames only what the stage
did (mlbuild's own temporary files, siblings' outputs and a user's concurrent edits are not
its doing), the guard area is cleaned, and a hermetic stage cannot plant bytecode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Project
from tests.scenario import new_project

GUARD = Path(".dvc/tmp/mlbuild/guard")
PYC = f"pkg/__pycache__/mod.{sys.implementation.cache_tag}.pyc"


def _wait_for(path: Path) -> str:
    """A shell loop that waits (up to about a minute) until *path* exists."""
    return f"i=0; while [ ! -e {path} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"


def _py_wait(go: Path) -> str:
    return ("import os, time\n"
            f"for _ in range(600):\n    if os.path.exists({str(go)!r}):\n        break\n"
            "    time.sleep(0.1)\n")


def _until(predicate: object, proc: subprocess.Popen[str]) -> None:
    """Poll until *predicate* holds (the build is still running meanwhile)."""
    for _ in range(1200):
        if callable(predicate) and predicate():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the build")


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, err + out


def _compiled(tmp_path: Path, files: dict[str, str]) -> Project:
    proj = new_project(tmp_path / "p", {"notes.md": "mine\n", **files})
    assert proj.run("compile").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "compiled")
    return proj


# ---- finding 5: put-back blames only what the stage did ---------------------------------

def test_mlbuild_temporaries_and_sibling_outputs_are_not_a_stage_change(tmp_path: Path) -> None:
    go = tmp_path / "go"
    proj = _compiled(tmp_path, {
        "stages/slow.yaml": f"cmd: sh -c '{_wait_for(go)}; echo a > a.txt'\nouts: [a.txt]\n",
        "stages/quick.yaml": "cmd: sh -c 'mkdir -p b && echo b > b/b.txt'\nouts: [b]\n",
    })
    proc = proj.popen("run", "-j", "2")
    _until(lambda: (proj.path / "b" / "b.txt").exists()
           and "quick" in (proj.path / "dvc.lock").read_text()
           if (proj.path / "dvc.lock").exists() else False, proc)
    # what a sibling's gitignore or dvc.lock write leaves for an instant: mlbuild's name, pid
    tmp = proj.path / f"..gitignore.{proc.pid}-0123456789ab.tmp"
    tmp.write_text("b\n")
    go.touch()
    code, text = _finish(proc)
    assert code == 0, text
    assert tmp.read_text() == "b\n"  # neither blamed nor moved
    assert proj.read("b/b.txt") == "b\n" and proj.read("a.txt") == "a\n"
    assert "undeclared" not in text


def test_concurrent_edit_during_a_python_stage_is_neither_blamed_nor_moved(
        tmp_path: Path) -> None:
    go = tmp_path / "go"
    proj = _compiled(tmp_path, {
        "stages/s.yaml": "cmd: python stages/s.py\nouts: [out.txt]\n",
        "stages/s.py": _py_wait(go) + "open('out.txt', 'w').write('ok')\n",
    })
    proc = proj.popen("run", "--json")
    _until(lambda: any((proj.path / ".dvc/tmp/mlbuild/trace").glob("*/*")), proc)
    proj.write("notes.md", "edited while the stage ran\n")
    go.touch()
    code, text = _finish(proc)
    assert code == 0, text
    assert proj.read("notes.md") == "edited while the stage ran\n"
    assert "ran while undeclared file(s) 'notes.md' changed" in text  # a warning only
    assert not list((proj.path / GUARD).glob("*/changed"))


def test_python_stage_that_shells_out_still_gets_its_change_put_back(tmp_path: Path) -> None:
    code = ("import subprocess\nsubprocess.run(['sh', '-c', 'echo damaged > notes.md'], "
            "check=True)\nopen('out.txt', 'w').write('ok')\n")
    proj = _compiled(tmp_path, {"stages/s.yaml": "cmd: python stages/s.py\nouts: [out.txt]\n",
                                "stages/s.py": code})
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "changed undeclared file(s) 'notes.md'; they were put back" in proc.stderr
    assert proj.read("notes.md") == "mine\n"


def test_python_stage_renaming_onto_a_new_undeclared_file_fails(tmp_path: Path) -> None:
    code = ("import os\nopen('t', 'w').write('x')\nos.rename('t', 'new.txt')\n"
            "open('out.txt', 'w').write('ok')\n")
    proj = _compiled(tmp_path, {"stages/s.yaml": "cmd: python stages/s.py\nouts: [out.txt]\n",
                                "stages/s.py": code})
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "wrote undeclared output(s) 'new.txt'" in proc.stderr  # the trace saw the rename


def test_guard_area_keeps_only_the_latest_put_back_of_a_stage(tmp_path: Path) -> None:
    proj = _compiled(tmp_path, {
        "stages/s.yaml": "cmd: sh -c 'echo damaged > notes.md; echo ok > out.txt'\n"
                         "outs: [out.txt]\n"})
    stale = proj.path / GUARD / "s-0badc0de" / "before"  # left by a killed run
    stale.mkdir(parents=True)
    (stale / "notes.md").write_text("old copy\n")
    kept = []
    for _ in range(2):
        proc = proj.run("run")
        assert proc.returncode == 1, proc.stderr + proc.stdout
        assert proj.read("notes.md") == "mine\n"
        [area] = list((proj.path / GUARD).iterdir())  # one area: the latest
        assert (area / "changed" / "notes.md").read_text() == "damaged\n"
        assert not (area / "before").exists()
        assert f"its version is kept in {GUARD / area.name / 'changed'}" in proc.stderr
        kept.append(area.name)
    assert kept[0] != kept[1]


# ---- finding 6: no bytecode planted in the project -------------------------------------

def _pyc_project(tmp_path: Path, code: str, cmd: str = "python stages/s.py") -> Project:
    return _compiled(tmp_path, {
        "pkg/__init__.py": "", "pkg/mod.py": "VALUE = 1\n", PYC: "old bytecode",
        "stages/s.yaml": f"cmd: {cmd}\nouts: [out.txt]\n",
        "stages/s.py": code + "open('out.txt', 'w').write('ok')\n"})


def test_python_write_into_a_project_pycache_is_refused(tmp_path: Path) -> None:
    for target in (PYC, "pkg/__pycache__/other.pyc"):
        proj = _pyc_project(tmp_path / target.replace("/", "_"),
                            f"open({target!r}, 'wb').write(b'planted')\n")
        proc = proj.run("run")
        assert proc.returncode == 1, proc.stderr + proc.stdout
        assert f"'{target}'" in proc.stderr and "refused" in proc.stderr
        assert proj.read(PYC) == "old bytecode"
        assert not (proj.path / "pkg/__pycache__/other.pyc").exists()


def test_shell_write_into_a_project_pycache_is_put_back(tmp_path: Path) -> None:
    proj = _pyc_project(tmp_path, "", cmd=f"sh -c 'echo planted > {PYC}; echo ok > out.txt'")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"'{PYC}'" in proc.stderr
    assert proj.read(PYC) == "old bytecode"


def test_project_imports_compile_into_the_stage_area_in_children_too(tmp_path: Path) -> None:
    code = ("import os, subprocess, sys\nsys.path.insert(0, os.getcwd())\n"  # the project's pkg
            "import pkg.mod\nimport rich.text\n"
            "subprocess.run([sys.executable, '-c', 'import pkg.mod, rich.table; import os; "
            "print(os.environ[\"PYTHONPYCACHEPREFIX\"])'], env={}, check=True)\n")
    proj = _pyc_project(tmp_path, code)
    (proj.path / PYC).unlink()
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert not (proj.path / "pkg" / "__pycache__").exists() or not any(
        (proj.path / "pkg" / "__pycache__").iterdir())
    log = proj.read(".dvc/tmp/mlbuild/logs/s.out")
    prefix = Path(log.strip())
    assert prefix.is_relative_to(proj.path / ".dvc/tmp/mlbuild")
    assert list(prefix.rglob(f"mod.{sys.implementation.cache_tag}.pyc"))
    # installed packages keep their own bytecode (compiled by pip), in children too
    assert not [p for p in prefix.rglob("*.pyc") if "rich" in p.parts]
    assert os.environ.get("PYTHONPYCACHEPREFIX") != str(prefix)


def test_a_new_hard_link_to_tracked_data_elsewhere_is_no_change(tmp_path: Path) -> None:
    """With cache.type hardlink, data checked out here is one inode with its cache object:
    another workspace linking the same object (an experiment's variant) changes its ctime."""
    go = tmp_path / "go"
    proj = _compiled(tmp_path, {
        "stages/s.yaml": f"cmd: sh -c '{_wait_for(go)}; echo ok > out.txt'\nouts: [out.txt]\n"})
    proj.dvc("config", "cache.type", "hardlink")
    proj.write("data/raw.csv", "a,b\n1,2\n")
    assert proj.dvc("add", "data/raw.csv").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "data")
    assert (proj.path / "data/raw.csv").stat().st_nlink == 2  # itself and its cache object
    proc = proj.popen("run", "--json")
    _until(lambda: any((proj.path / ".dvc/tmp/mlbuild/trace").glob("*")), proc)
    time.sleep(0.5)  # the snapshot before the stage is taken by now
    (tmp_path / "elsewhere").mkdir()
    os.link(proj.path / "data/raw.csv", tmp_path / "elsewhere" / "raw.csv")
    go.touch()
    code, text = _finish(proc)
    assert code == 0, text
    assert "raw.csv" not in text
    assert proj.read("data/raw.csv") == "a,b\n1,2\n"
