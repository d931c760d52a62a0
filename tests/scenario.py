"""Helpers for the dvc.yaml scenario tests: scenario projects, lock and cache inspection."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.conftest import Project, init_repo

SCENARIOS = Path(__file__).parent / "scenarios"
PIPELINE = "pipeline.yaml"  # stored under this name so DVC does not collect it in this repo
UP_TO_DATE = "Data and pipelines are up to date"


def empty_project(dest: Path) -> Project:
    """A fresh, empty git + DVC project at *dest*."""
    return init_repo(dest)


def scenario(dest: Path, name: str) -> Project:
    """A fresh git + DVC project holding tests/scenarios/<name> (pipeline.yaml as dvc.yaml)."""
    proj = empty_project(dest)
    src = SCENARIOS / name
    for path in sorted(src.rglob("*")):
        if path.is_file():
            rel = path.relative_to(src).as_posix()
            target = dest / ("dvc.yaml" if rel == PIPELINE else rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    proj.git("add", "-A")
    proj.git("commit", "-qm", f"scenario {name}")
    return proj


def new_project(dest: Path, files: dict[str, str]) -> Project:
    """A fresh git + DVC project with these files, committed."""
    proj = empty_project(dest)
    for rel, text in files.items():
        proj.write(rel, text)
    proj.git("add", "-A")
    proj.git("commit", "-qm", "project")
    return proj


def load_yaml(path: Path) -> Any:
    """Parse YAML as DVC does (ruamel.yaml, YAML 1.2)."""
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def lock(proj: Project) -> dict[str, Any]:
    """dvc.lock's stages, as DVC reads them."""
    return dict(load_yaml(proj.path / "dvc.lock")["stages"])


def md5(proj: Project, rel: str) -> str:
    """md5 of a project file."""
    return hashlib.md5((proj.path / rel).read_bytes()).hexdigest()


def cache_object(proj: Project, md5_hash: str) -> Path:
    """Where DVC keeps an object in the local cache."""
    return proj.path / ".dvc" / "cache" / "files" / "md5" / md5_hash[:2] / md5_hash[2:]


def run_cache(proj: Project) -> dict[str, Any]:
    """Run-cache entries: path relative to .dvc/cache -> parsed entry."""
    cache = proj.path / ".dvc" / "cache"
    runs = cache / "runs"
    if not runs.is_dir():
        return {}
    return {p.relative_to(cache).as_posix(): load_yaml(p)
            for p in sorted(runs.rglob("*")) if p.is_file()}


def cached_objects(proj: Project) -> set[str]:
    """Object paths in the local cache."""
    files = proj.path / ".dvc" / "cache" / "files"
    return {p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()}


def outcomes(proj: Project, *args: str) -> dict[str, str]:
    """`mlbuild run ARGS --json`: stage -> outcome (asserts success)."""
    return proj.outcomes(proj.run_json("run", *args))


def stale(proj: Project) -> dict[str, list[str]]:
    """`mlbuild status --json`: stale stage -> its reasons."""
    report = proj.run_json("status")
    stages: list[dict[str, Any]] = report["stages"]  # type: ignore[assignment]
    return {s["stage"]: s["reasons"] for s in stages if s["stale"]}


def dvc_status(proj: Project) -> dict[str, Any]:
    """`dvc status --json`: changed stage -> DVC's description (empty when up to date)."""
    proc = proj.dvc("status", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return dict(json.loads(proc.stdout or "{}"))


def assert_dvc_up_to_date(proj: Project) -> None:
    """Plain `dvc status` sees nothing to do, and `dvc repro` runs nothing."""
    status = proj.dvc("status")
    assert status.returncode == 0, status.stderr
    assert UP_TO_DATE in status.stdout, status.stdout
    repro = proj.dvc("repro")
    assert repro.returncode == 0, repro.stderr + repro.stdout
    assert "Running stage" not in repro.stdout, repro.stdout
