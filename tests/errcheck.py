"""Helpers for the bad-input and failure tests: small projects, one-line errors, snapshots."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.conftest import Project, init_repo

# A hand-written pipeline: prepare -> train -> evaluate, plus report, independent of them.
CHAIN = """
stages:
  prepare:
    cmd: cp data.txt prepared.txt
    deps: [data.txt]
    outs: [prepared.txt]
  train:
    cmd: cat prepared.txt prepared.txt > model.txt
    deps: [prepared.txt]
    params: [train.lr]
    outs: [model.txt]
  evaluate:
    cmd: wc -c < model.txt > metrics.txt
    deps: [model.txt]
    outs: [metrics.txt]
  report:
    cmd: echo report v1 > report.txt
    outs: [report.txt]
"""
TRAIN_CMD = "cat prepared.txt prepared.txt > model.txt"
CHAIN_OUTS = ("prepared.txt", "model.txt", "metrics.txt", "report.txt")

# A declared stage: stages/x.yaml compiled into a generated dvc.yaml.
DECL = """
cmd: python stages/x.py
deps:
  - data.txt
outs:
  - x.txt
"""
DECL_CODE = """
from pathlib import Path

Path("x.txt").write_text(Path("data.txt").read_text().upper())
"""


def build(proj: Project) -> Project:
    """Run the whole pipeline once; it must succeed."""
    proc = proj.run("run", "-j", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proj


def make_chain(path: Path) -> Project:
    """The CHAIN project, built and committed."""
    proj = init_repo(path)
    proj.write("data.txt", "some data\n")
    proj.write("params.yaml", "train:\n  lr: 0.1\n  epochs: 3\n")
    proj.write("dvc.yaml", CHAIN)
    build(proj)
    proj.git("add", "-A")
    proj.git("commit", "-qm", "chain")
    return proj


def make_declared(path: Path) -> Project:
    """A project with one declared stage (stages/x.yaml + stages/x.py), built and committed."""
    proj = init_repo(path)
    proj.write("data.txt", "some data\n")
    proj.write("stages/x.yaml", DECL)
    proj.write("stages/x.py", DECL_CODE)
    build(proj)
    assert proj.read("x.txt") == "SOME DATA\n"
    proj.git("add", "-A")
    proj.git("commit", "-qm", "declared")
    return proj


def copy_project(template: Path, dest: Path) -> Project:
    """A private copy of a built template (mtimes preserved)."""
    shutil.copytree(template, dest, symlinks=True)
    return Project(dest)


def snapshot(proj: Project, *paths: str) -> dict[str, tuple[str, int]]:
    """(md5, mtime_ns) of the given files, dvc.lock and everything in .dvc/cache."""
    files = [proj.path / p for p in (*paths, "dvc.lock")]
    files += sorted((proj.path / ".dvc" / "cache").rglob("*"))
    return {
        f.relative_to(proj.path).as_posix(): (hashlib.md5(f.read_bytes()).hexdigest(),
                                              f.stat().st_mtime_ns)
        for f in files if f.is_file()
    }


def error_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Assert the documented exit code and exactly one 'mlbuild: error:' line on stderr,
    no traceback, naming every needle; return that line."""
    assert proc.returncode == code, (proc.returncode, proc.stderr, proc.stdout)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mlbuild: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
