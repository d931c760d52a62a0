"""The DVC interoperability contract, checked with the real dvc CLI on every scenario.

After `mlbuild run`, `dvc status` and `dvc repro` find nothing to do; after `dvc repro`,
`mlbuild status` agrees; both tools write the same dvc.lock, cache objects and run-cache, and
each restores from the run-cache the other wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.scenario import (
    assert_dvc_up_to_date,
    cached_objects,
    dvc_status,
    load_yaml,
    lock,
    new_project,
    outcomes,
    run_cache,
    scenario,
    stale,
)

SCENARIOS = ["templating", "wdir", "params_files", "persist", "nocache", "metrics_plots",
             "dirout", "paramsonly", "dvcignore"]
TRAIN = """\
stages:
  train:
    cmd: echo run >> .dvc/tmp/counter && grep lr params.yaml > model.txt
    deps:
      - data.txt
    params:
      - lr
    outs:
      - model.txt
"""


def _trainer(dest: Path) -> Project:
    return new_project(dest, {"dvc.yaml": TRAIN, "data.txt": "rows\n", "params.yaml": "lr: 1\n"})


def _counter(proj: Project) -> int:
    path = proj.path / ".dvc" / "tmp" / "counter"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _dvc_repro(proj: Project, *args: str) -> str:
    proc = proj.dvc("repro", *args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _gitignores(proj: Project) -> dict[str, set[str]]:
    return {p.relative_to(proj.path).as_posix(): set(p.read_text().splitlines())
            for p in proj.path.rglob(".gitignore") if ".dvc" not in p.parts}


@pytest.mark.parametrize("name", SCENARIOS)
def test_mlbuild_and_dvc_agree_and_write_the_same_files(tmp_path: Path, name: str) -> None:
    ours, theirs = scenario(tmp_path / "ours", name), scenario(tmp_path / "theirs", name)
    assert set(outcomes(ours).values()) == {"ran"}
    assert "Running stage" in _dvc_repro(theirs)
    # the same dvc.lock, cache objects, run-cache entries and .gitignore files
    assert lock(ours) == lock(theirs)
    assert run_cache(ours) == run_cache(theirs)
    assert cached_objects(ours) == cached_objects(theirs)
    assert _gitignores(ours) == _gitignores(theirs)
    # each tool finds nothing to do after the other
    assert theirs.run_json("status")["up_to_date"] is True
    assert_dvc_up_to_date(ours)
    assert ours.run_json("status")["up_to_date"] is True


def test_always_changed_is_the_only_change_either_tool_sees(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "always")
    outcomes(proj)
    assert dvc_status(proj) == {"stamp": ["always changed"]}
    out = _dvc_repro(proj)
    assert "Running stage 'stamp'" in out
    assert "Running stage 'steady'" not in out
    assert stale(proj) == {"stamp": ["always changed"]}


# --- run-cache -------------------------------------------------------------------------------

def test_revert_restores_from_run_cache_without_running(tmp_path: Path) -> None:
    proj = _trainer(tmp_path / "p")
    assert outcomes(proj) == {"train": "ran"}
    proj.write("params.yaml", "lr: 2\n")
    assert outcomes(proj) == {"train": "ran"}
    proj.write("params.yaml", "lr: 1\n")
    assert outcomes(proj) == {"train": "restored"}
    assert proj.read("model.txt") == "lr: 1\n"
    assert _counter(proj) == 2
    assert_dvc_up_to_date(proj)


def test_mlbuild_restores_from_run_cache_dvc_wrote(tmp_path: Path) -> None:
    proj = _trainer(tmp_path / "p")
    _dvc_repro(proj)
    proj.write("params.yaml", "lr: 2\n")
    _dvc_repro(proj)
    proj.write("params.yaml", "lr: 1\n")
    assert outcomes(proj) == {"train": "restored"}
    assert proj.read("model.txt") == "lr: 1\n"
    assert _counter(proj) == 2
    assert dvc_status(proj) == {}


def test_dvc_restores_from_run_cache_mlbuild_wrote(tmp_path: Path) -> None:
    proj = _trainer(tmp_path / "p")
    outcomes(proj)
    proj.write("params.yaml", "lr: 2\n")
    outcomes(proj)
    proj.write("params.yaml", "lr: 1\n")
    out = _dvc_repro(proj)
    assert "Stage 'train' is cached - skipping run" in out
    assert "Running stage" not in out
    assert proj.read("model.txt") == "lr: 1\n"
    assert _counter(proj) == 2
    assert proj.run_json("status")["up_to_date"] is True


def test_run_cache_layout_is_dvcs(tmp_path: Path) -> None:
    ours, theirs = _trainer(tmp_path / "ours"), _trainer(tmp_path / "theirs")
    outcomes(ours)
    _dvc_repro(theirs)
    entries = run_cache(ours)
    assert entries == run_cache(theirs)
    [(path, entry)] = entries.items()
    match = re.fullmatch(r"runs/([0-9a-f]{2})/([0-9a-f]{64})/([0-9a-f]{64})", path)
    assert match is not None, path
    assert match.group(2).startswith(match.group(1))
    assert entry == lock(ours)["train"]  # the value is the stage's lock entry
    runs = ours.path / ".dvc" / "cache" / "runs"
    assert load_yaml(runs / path.split("/", 1)[1]) == entry


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_persistent_output_linked_into_the_cache_is_unprotected(tmp_path: Path, link: str) -> None:
    proj = scenario(tmp_path / "p", "persist")
    assert proj.dvc("config", "cache.type", link).returncode == 0
    _dvc_repro(proj)  # DVC links log.txt to its cache object
    first = lock(proj)["log"]["outs"][0]["md5"]
    proj.write("src.txt", "two\n")
    assert outcomes(proj) == {"log": "ran"}
    assert proj.read("log.txt") == "one\ntwo\n"
    obj = proj.path / ".dvc" / "cache" / "files" / "md5" / first[:2] / first[2:]
    assert obj.read_text() == "one\n"  # the append went to a private copy, not the cache
    assert dvc_status(proj) == {}
