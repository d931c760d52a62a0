"""dvc.lock entries and run-cache keys, in-process, against files real DVC wrote.

One module-scoped project is built once by `dvc repro`; every test then reads, rewrites or
re-derives what DVC wrote, without spawning anything."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mlbuild.dvcfmt.dvcyaml import load_pipeline
from mlbuild.dvcfmt.lockfile import LockEntry, LockFile, stage_entry
from mlbuild.store.runcache import RunCache, _sha256, run_key
from tests.conftest import Project
from tests.scenario import empty_project

PIPELINE = """\
stages:
  prep:
    cmd: python prep.py
    deps: [prep.py, raw]
    params: [seed, {extra.yaml: [lr]}]
    outs: [features, b.txt]
    metrics: [{m.json: {cache: false}}]
  report:
    cmd: python -c "open('r.txt','w').write(open('b.txt').read()*2)"
    deps: [b.txt]
    outs: [r.txt]
"""
PREP = """\
import json, os
os.makedirs('features', exist_ok=True)
for name in ('x', 'y'):
    open(f'features/{name}', 'w').write(open(f'raw/{name}').read().upper())
open('b.txt', 'w').write('b')
json.dump({'acc': 1}, open('m.json', 'w'))
"""


@pytest.fixture(scope="module")
def dvc_built(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose dvc.lock and run-cache were written by `dvc repro`."""
    proj = empty_project(tmp_path_factory.mktemp("lock") / "p")
    proj.write("dvc.yaml", PIPELINE)
    proj.write("prep.py", PREP)
    proj.write("raw/x", "x1\n")
    proj.write("raw/y", "y1\n")
    proj.write("params.yaml", "seed: 3\nunused: 1\n")
    proj.write("extra.yaml", "lr: 0.5\nother: [1, 2]\n")
    proc = proj.dvc("repro")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proj


def test_entries_are_typed(dvc_built: Project) -> None:
    entry = LockFile(dvc_built.path).get("prep")
    assert entry is not None
    assert entry.cmd == "python prep.py"
    assert list(entry.deps) == ["prep.py", "raw"]
    raw = entry.deps["raw"]
    assert raw is not None and raw.isdir and raw.nfiles == 2 and raw.size == 6
    assert entry.params == {"params.yaml": {"seed": 3}, "extra.yaml": {"lr": 0.5}}
    assert set(entry.outs) == {"features", "b.txt", "m.json"}
    assert entry.out_md5s()["b.txt"] == "92eb5ffee6ae2fec3ad71c777531578f"  # md5 of 'b'
    assert LockFile(dvc_built.path).get("nonexistent") is None


def test_rewriting_every_entry_is_byte_identical(dvc_built: Project, tmp_path: Path) -> None:
    original = (dvc_built.path / "dvc.lock").read_bytes()
    (tmp_path / "dvc.lock").write_bytes(original)
    lock = LockFile(tmp_path)
    for name, entry in lock.stages.items():
        lock.update(name, entry)
    lock.flush()
    assert (tmp_path / "dvc.lock").read_bytes() == original


def test_an_entry_built_from_its_parts_is_what_dvc_wrote(dvc_built: Project) -> None:
    lock = LockFile(dvc_built.path)
    pipeline = load_pipeline(dvc_built.path)
    for name, entry in lock.stages.items():
        deps = {path: info for path, info in entry.deps.items() if info is not None}
        built = stage_entry(pipeline.stages[name], deps, entry.params, entry.outs)
        assert built.raw == entry.raw


def test_run_cache_key_and_value_are_dvcs(dvc_built: Project) -> None:
    runs = dvc_built.path / ".dvc" / "cache" / "runs"
    for name in ("prep", "report"):
        entry = LockFile(dvc_built.path).get(name)
        assert entry is not None
        key = run_key(entry)
        values = list((runs / key[:2] / key).iterdir())  # the directory DVC made
        assert [v.name for v in values] == [_sha256(entry.raw)]
        found = RunCache(runs.parent).lookup(key)
        assert found is not None and found.out_md5s() == entry.out_md5s()


def test_run_cache_key_equals_dvcs_own_stage_hash(dvc_built: Project) -> None:
    from dvc.repo import Repo
    from dvc.stage.cache import _get_stage_hash

    lock = LockFile(dvc_built.path)
    with Repo(str(dvc_built.path)) as repo:
        for stage in repo.index.stages:
            entry = lock.get(stage.name)
            assert entry is not None
            assert run_key(entry) == _get_stage_hash(stage)


def test_a_key_depends_on_output_paths_not_their_hashes(dvc_built: Project) -> None:
    entry = LockFile(dvc_built.path).get("report")
    assert entry is not None
    other = copy.deepcopy(entry.raw)
    other["outs"][0]["md5"] = "0" * 32
    assert run_key(LockEntry.parse(other)) == run_key(entry)
    other["outs"][0]["path"] = "elsewhere.txt"
    assert run_key(LockEntry.parse(other)) != run_key(entry)
    other = copy.deepcopy(entry.raw)
    other["deps"][0]["md5"] = "0" * 32
    assert run_key(LockEntry.parse(other)) != run_key(entry)
    partial = stage_entry(load_pipeline(dvc_built.path).stages["report"],
                          {p: i for p, i in entry.deps.items() if i is not None},
                          entry.params, dict.fromkeys(entry.outs))
    assert run_key(partial) == run_key(entry)  # the key of a build about to run


def test_parse_tolerates_what_dvc_would_not_write() -> None:
    entry = LockEntry.parse({"cmd": "x", "deps": [{"path": "a"}, "junk"], "params": []})
    assert entry.deps == {"a": None}
    assert entry.params == {} and entry.outs == {} and entry.out_md5s() == {}
