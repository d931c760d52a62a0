"""Shared fixtures: real CLI subprocesses in temporary git repositories with real DVC."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FILES = ("configs", "stages", "data.dvc", "dvc-storage", "params.yaml", "dvc.yaml",
                 ".dvcignore", "mlbuild.yaml")
BIN = str(Path(sys.executable).parent)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DVC_ROOT", None)
    env.pop("DVC_STAGE", None)
    env["DVC_NO_ANALYTICS"] = "1"
    env["COLUMNS"] = "200"
    extra = dict(extra or {})
    if "PYTHONPATH" in extra:  # added to, never replacing, the path to this checkout
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), extra.pop("PYTHONPATH")])
    env.update(extra)
    return env


class Project:
    """A temporary project directory with helpers to drive the real CLIs in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`python -m mlbuild ARGS` in the project."""
        return subprocess.run([sys.executable, "-m", "mlbuild", *args], cwd=self.path,
                              env=_env(env), capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """`python -m mlbuild ARGS` started in the background (stdout and stderr piped)."""
        return subprocess.Popen([sys.executable, "-m", "mlbuild", *args], cwd=self.path,
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run_json(self, *args: str) -> dict[str, object]:
        """`mlbuild ARGS --json`, parsed; asserts success."""
        proc = self.run(*args, "--json")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return dict(json.loads(proc.stdout))

    def dvc(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Real DVC's CLI in the project."""
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=self.path, env=_env(),
                              capture_output=True, text=True, timeout=300)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        """git in the project."""
        return subprocess.run(["git", *args], cwd=self.path, env=_env(), capture_output=True,
                              text=True, check=True)

    def write(self, rel: str, text: str) -> Path:
        """Write a file (dedented), creating parents."""
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def read(self, rel: str) -> str:
        """Read a project file."""
        return (self.path / rel).read_text()

    def outcomes(self, report: dict[str, object]) -> dict[str, str]:
        """stage -> outcome from a `run --json` report."""
        return {s["stage"]: s["outcome"] for s in report["stages"]}  # type: ignore[index, union-attr]


def init_repo(path: Path) -> Project:
    """git init + dvc init in *path*."""
    path.mkdir(parents=True, exist_ok=True)
    proj = Project(path)
    proj.git("init", "-q")
    proj.git("config", "user.email", "test@example.com")
    proj.git("config", "user.name", "test")
    proc = proj.dvc("init", "-q")
    assert proc.returncode == 0, proc.stderr
    proj.dvc("config", "core.analytics", "false")
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty git + DVC project."""
    return init_repo(tmp_path / "proj")


def copy_example(dest: Path) -> Project:
    """The embedded example in a fresh git repository (no cache, no outputs)."""
    proj = init_repo(dest)
    for name in EXAMPLE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    shutil.copy2(REPO / ".dvc" / "config", dest / ".dvc" / "config")
    (dest / "data").mkdir(exist_ok=True)
    shutil.copy2(REPO / "data" / ".gitignore", dest / "data" / ".gitignore")
    shutil.copy2(REPO / ".gitignore", dest / ".gitignore")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "example")
    return proj


@pytest.fixture(scope="session")
def built_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built once per session (cold build); copy it with example_built."""
    proj = copy_example(tmp_path_factory.mktemp("template") / "example")
    proc = proj.run("run", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proj.path


@pytest.fixture
def example(tmp_path: Path) -> Project:
    """A fresh, unbuilt copy of the example."""
    return copy_example(tmp_path / "example")


@pytest.fixture
def example_built(built_example: Path, tmp_path: Path) -> Project:
    """A private copy of the built example (outputs, cache and lock present)."""
    dest = tmp_path / "example"
    shutil.copytree(built_example, dest, symlinks=True)
    return Project(dest)


Factory = Callable[[Path], Project]
