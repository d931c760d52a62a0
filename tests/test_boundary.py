"""The project boundary: symlinks out of the project, special files, and what a hermetic stage
may touch (tool metadata, undeclared files, child interpreters, ctypes)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.scenario import lock, new_project

STAGE_OUT_SUB = """
stages:
  make:
    cmd: mkdir -p ext/sub && echo new > ext/sub/file.txt
    outs: [ext/sub]
"""


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the project holding a user's file at sub/keep.txt."""
    outside = tmp_path / "elsewhere"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep.txt").write_text("precious\n")
    return outside


def _untouched(outside: Path) -> None:
    assert (outside / "sub" / "keep.txt").read_text() == "precious\n"
    assert sorted(p.name for p in outside.rglob("*")) == ["keep.txt", "sub"]


def _linked(tmp_path: Path, files: dict[str, str], link: str, target: Path) -> Project:
    proj = new_project(tmp_path / "p", files)
    (proj.path / link).parent.mkdir(parents=True, exist_ok=True)
    (proj.path / link).symlink_to(target)
    return proj


def test_output_through_a_symlink_out_of_the_project_is_refused(tmp_path: Path,
                                                                 elsewhere: Path) -> None:
    proj = _linked(tmp_path, {"dvc.yaml": STAGE_OUT_SUB}, "ext", elsewhere)
    for args in (("run",), ("status",)):
        proc = proj.run(*args)
        assert proc.returncode == 2, proc.stderr + proc.stdout
        assert ("mlbuild: error: stage 'make': outs path 'ext/sub' leads out of the project "
                f"through a symlink: it really is '{elsewhere.resolve() / 'sub'}'") in proc.stderr
        _untouched(elsewhere)


def test_declared_stage_output_through_a_symlink_is_refused(tmp_path: Path,
                                                            elsewhere: Path) -> None:
    proj = _linked(tmp_path, {"stages/make.yaml": "cmd: echo x > ext/sub/f\nouts: [ext/sub]\n"},
                   "ext", elsewhere)
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'ext/sub' leads out of the project through a symlink" in proc.stderr
    _untouched(elsewhere)


@pytest.mark.parametrize(("decl", "named"), [
    ("    deps: [ext/sub/keep.txt]\n", "dependency 'ext/sub/keep.txt'"),
    ("    wdir: ext\n", "wdir 'ext'"),
    ("    metrics: [ext/m.json]\n", "metrics path 'ext/m.json'"),
    ("    plots: [ext/p.csv]\n", "plots path 'ext/p.csv'"),
    ("    params: [{ext/params.yaml: []}]\n", "params file 'ext/params.yaml'"),
])
def test_every_kind_of_declared_path_is_resolved(tmp_path: Path, elsewhere: Path, decl: str,
                                                 named: str) -> None:
    dvcyaml = "stages:\n  s:\n    cmd: echo hi > o.txt\n    outs: [o.txt]\n" + decl
    proj = _linked(tmp_path, {"dvc.yaml": dvcyaml}, "ext", elsewhere)
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert f"stage 's': {named} leads out of the project through a symlink" in proc.stderr
    assert not (proj.path / "o.txt").exists()
    _untouched(elsewhere)


def test_tracked_data_through_a_symlink_is_refused_before_pull(tmp_path: Path,
                                                               elsewhere: Path) -> None:
    proj = new_project(tmp_path / "p", {"link/a.txt": "a\n", "dvc.yaml": STAGE_OUT_SUB.replace(
        "ext/sub", "o")})
    proj.git("rm", "-rq", "--cached", "link")
    assert proj.dvc("add", "link").returncode == 0
    shutil.rmtree(proj.path / "link")
    (proj.path / "link").symlink_to(elsewhere / "sub")
    for args in (("run",), ("pull",)):
        proc = proj.run(*args)
        assert proc.returncode == 2, proc.stderr + proc.stdout
        assert "link.dvc: tracked path 'link' leads out of the project" in proc.stderr
        _untouched(elsewhere)


def test_output_resolving_into_git_metadata_is_refused(tmp_path: Path) -> None:
    proj = _linked(tmp_path, {"dvc.yaml": STAGE_OUT_SUB.replace("ext/sub", "ext/hooks")},
                   "ext", Path(".git"))
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'ext/hooks' leads into tool metadata through a symlink" in proc.stderr
    assert not (proj.path / ".git" / "hooks" / "file.txt").exists()


def test_symlink_made_by_an_upstream_stage_is_refused_before_writing(tmp_path: Path,
                                                                     elsewhere: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": f"""
stages:
  linker:
    cmd: ln -s {elsewhere} ext && echo l > l.txt
    outs: [l.txt]
  make:
    cmd: echo new > ext/sub/keep.txt
    deps: [l.txt]
    outs: [ext/sub]
"""})
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "stage 'make': outs path 'ext/sub' leads out of the project" in proc.stderr
    _untouched(elsewhere)


def test_restore_never_follows_a_link_placed_after_the_build(tmp_path: Path,
                                                             elsewhere: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": STAGE_OUT_SUB})
    assert proj.run("run").returncode == 0
    shutil.rmtree(proj.path / "ext")
    (proj.path / "ext").symlink_to(elsewhere)
    shutil.rmtree(elsewhere / "sub")
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "leads out of the project through a symlink" in proc.stderr
    assert list(elsewhere.iterdir()) == []  # nothing restored into it, no .gitignore


def test_output_linked_into_the_cache_is_accepted(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"in.txt": "new\n", "dvc.yaml": (
        "stages:\n  make:\n    cmd: cp in.txt o.txt\n    deps: [in.txt]\n    outs: [o.txt]\n")})
    assert proj.dvc("config", "cache.type", "symlink").returncode == 0
    assert proj.run("run").returncode == 0
    (proj.path / "o.txt").unlink()
    assert proj.run("run").returncode == 0
    assert (proj.path / "o.txt").is_symlink()  # restored as a link into the cache
    assert (proj.path / "o.txt").read_text() == "new\n"
    for args in (("status",), ("run",)):
        proc = proj.run(*args)
        assert proc.returncode == 0, proc.stderr + proc.stdout


# ---- special files (issue 9 item 10) -----------------------------------------------------

SPECIAL_DEP = """
stages:
  read:
    cmd: ls inputs > listing.txt
    deps: [inputs]
    outs: [listing.txt]
"""


@pytest.mark.parametrize("kind", ["fifo", "devzero", "fifo-top", "devzero-top"])
def test_special_files_in_dependencies_are_refused_not_read(tmp_path: Path, kind: str) -> None:
    top = kind.endswith("-top")
    proj = new_project(tmp_path / "p", {
        "inputs/a.txt": "a\n",
        "dvc.yaml": SPECIAL_DEP.replace("[inputs]", "[inputs/special]") if top else SPECIAL_DEP,
    })
    special = proj.path / "inputs" / "special"
    if kind.startswith("fifo"):
        os.mkfifo(special)
        named = "is a FIFO"
    else:
        special.symlink_to("/dev/zero")
        named = "is a character device"
    for args in (("status",), ("run",)):
        proc = proj.run(*args, timeout=60)  # today: hangs for ever
        assert proc.returncode == 2, proc.stderr + proc.stdout
        assert f"mlbuild: error: 'inputs/special' {named}" in proc.stderr
        assert "does not exist" not in proc.stderr
    assert not (proj.path / "listing.txt").exists()


def test_special_file_made_as_an_output_is_refused(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": """
stages:
  make:
    cmd: mkdir out && mkfifo out/pipe && echo a > out/a.txt
    outs: [out]
"""})
    proc = proj.run("run", timeout=60)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'out/pipe' is a FIFO" in proc.stderr
    assert not (proj.path / "dvc.lock").exists() or "make" not in lock(proj)
