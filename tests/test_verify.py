"""`mlbuild verify`: isolated rebuild against dvc.lock, root cause, hints, --twice, and the
cross-directory, cross-environment build giving identical hashes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, copy_example, init_repo
from tests.scenario import lock, new_project

RANDOM = "python -c \"import os; open('o', 'wb').write(os.urandom(8))\""
CLOCK = "python -c \"import time; open('t.txt', 'w').write('built at %r' % time.time())\""
# rand -> down, clock -> use, and steady (deterministic); none imports anything.
FLAKY = {
    "stages/rand.yaml": f"cmd: {RANDOM}\nouts: [o]\n",
    "stages/down.yaml": "cmd: python -c \"open('d', 'w').write(open('o', 'rb').read().hex())\"\n"
                        "deps: [o]\nouts: [d]\n",
    "stages/clock.yaml": f"cmd: {CLOCK}\nouts: [t.txt]\n",
    "stages/use.yaml": "cmd: python -c \"open('u.txt', 'w').write(open('t.txt').read().upper())\"\n"
                       "deps: [t.txt]\nouts: [u.txt]\n",
    "stages/steady.yaml": "cmd: echo steady > s.txt\nouts: [s.txt]\n",
    # an output directory with one random file; the downstream stage depends on that file
    "stages/split.yaml": "cmd: mkdir -p parts && echo f > parts/f.txt && "
                         "head -c 8 /dev/urandom > parts/r.bin\nouts: [parts]\n",
    "stages/consume.yaml": "cmd: cp parts/r.bin c.bin\ndeps: [parts/r.bin]\nouts: [c.bin]\n",
    # the absolute path of the directory it was built in
    "stages/where.yaml": "cmd: python -c \"import os; open('w.txt', 'w').write(os.getcwd())\"\n"
                         "outs: [w.txt]\n",
}


def _verify(proj: Project, *args: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str],
                                                            dict[str, Any]]:
    """`mlbuild verify ARGS --json` with its own TMPDIR (to see the scratch space go)."""
    tmp.mkdir(exist_ok=True)
    proc = proj.run("verify", *args, "--json", env={"TMPDIR": str(tmp)})
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc, report


def _verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["stage"]: v for v in report["stages"]}


HISTORY = ".dvc/tmp/mlbuild/history/"  # verify records itself there, on purpose


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """md5 and mtime of every file outside .git and the run history: outputs, dvc.lock,
    .dvc/cache, ..."""
    return {p.relative_to(root).as_posix(): (hashlib.md5(p.read_bytes()).hexdigest(),
                                             p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts
            and not p.relative_to(root).as_posix().startswith(HISTORY)}


@pytest.fixture(scope="session")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """FLAKY built and committed with its dvc.lock (shared: verify changes nothing)."""
    proj = new_project(tmp_path_factory.mktemp("flaky") / "p", FLAKY)
    proc = proj.run("run", "-j", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    return proj


def test_verify_passes_on_the_example_and_touches_nothing(example_built: Project,
                                                          tmp_path: Path) -> None:
    example_built.git("add", "-A")
    example_built.git("commit", "-qm", "built example")
    before = _tree(example_built.path)
    assert any(p.startswith(".dvc/cache/") for p in before)
    tmp = tmp_path / "tmpdir"
    proc, report = _verify(example_built, tmp=tmp)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert report["ok"] is True
    assert {s: v["status"] for s, v in _verdicts(report).items()} == {
        "prepare": "identical", "train": "identical", "evaluate": "identical"}
    assert _tree(example_built.path) == before  # dvc.lock, outputs and .dvc/cache untouched
    assert example_built.git("status", "--porcelain").stdout == ""
    assert list(tmp.iterdir()) == []  # the scratch workspace is gone


def test_random_output_names_the_stage_and_its_downstream(flaky: Project,
                                                          tmp_path: Path) -> None:
    before = _tree(flaky.path)
    proc, report = _verify(flaky, "down", "steady", tmp=tmp_path / "t")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    verdicts = _verdicts(report)
    assert set(verdicts) == {"rand", "down", "steady"}  # the targets and their upstream only
    assert report["root_cause"] == "rand"
    assert verdicts["rand"]["status"] == "different"
    assert verdicts["rand"]["files"] == ["o"]
    assert verdicts["down"]["status"] == "different"
    assert verdicts["down"]["caused_by"] == "rand"
    assert verdicts["steady"]["status"] == "identical"
    assert _tree(flaky.path) == before
    text = flaky.run("verify", "down", "steady")
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert any("DIFFERENT" in line and "rand" in line and "(o)" in line for line in lines)
    assert any("down" in line and "caused by 'rand'" in line for line in lines), text.stdout
    assert "first stage that differs: 'rand'" in text.stdout
    assert "verify: FAILED" in text.stdout
    text = flaky.run("verify", "steady")
    assert text.returncode == 0, text.stderr + text.stdout
    assert "identical  steady" in text.stdout
    assert "verify: OK, every output reproduced" in text.stdout


def test_timestamp_in_output_is_named_as_the_likely_cause(flaky: Project,
                                                          tmp_path: Path) -> None:
    proc, report = _verify(flaky, "use", tmp=tmp_path / "t")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    verdicts = _verdicts(report)
    assert set(verdicts) == {"clock", "use"}
    assert report["root_cause"] == "clock"
    assert verdicts["use"]["caused_by"] == "clock"
    assert any("'t.txt' contains a timestamp" in h for h in verdicts["clock"]["hints"])
    assert verdicts["use"]["hints"] == []  # explained by its upstream


def test_twice_detects_the_random_stage_without_a_lock(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", FLAKY)  # never built: no dvc.lock committed
    proc, report = _verify(proj, "--twice", "down", "steady", tmp=tmp_path / "t")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert report["mode"] == "twice"
    verdicts = _verdicts(report)
    assert report["root_cause"] == "rand"
    assert any("nondeterministic" in h for h in verdicts["rand"]["hints"])
    assert verdicts["down"]["caused_by"] == "rand"
    assert verdicts["steady"]["status"] == "identical"
    assert not (proj.path / "dvc.lock").exists()  # nothing built in the project itself
    assert list((tmp_path / "t").iterdir()) == []


def test_without_a_committed_lock_verify_asks_for_one(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"stages/steady.yaml": FLAKY["stages/steady.yaml"]})
    proc = proj.run("verify")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "no committed dvc.lock" in proc.stderr
    assert "--twice" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_needs_a_commit(tmp_path: Path) -> None:
    proj = init_repo(tmp_path / "p")
    proj.write("dvc.yaml", "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n")
    proc = proj.run("verify")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "at least one commit" in proc.stderr
    plain = Project(tmp_path / "no-git")  # a DVC project outside any git repository
    plain.write(".dvc/config", "")
    plain.write("dvc.yaml", "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n")
    proc = plain.run("verify")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "verify needs a git repository" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_build_is_identical_across_directories_and_environments(
        tmp_path: Path, built_example: Path, stage_homes: Path) -> None:
    # one build is the run's cold build of the example (its own directory, the suite's
    # environment, the default -j); the other is made here, elsewhere, in an environment
    # that differs in every variable below, one stage at a time
    first = Project(built_example)
    second = copy_example(tmp_path / "elsewhere" / "deeper" / "copy", stage_homes)
    env = {"HOME": str(tmp_path / "home-b"), "USER": "bob", "TZ": "Asia/Kolkata",
           "LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8", "PYTHONHASHSEED": "random",
           "OMP_NUM_THREADS": "3"}
    assert all(os.environ.get(k) != v for k, v in env.items())
    Path(env["HOME"]).mkdir()
    proc = second.run("run", "--json", "-j", "1", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert set(second.outcomes(json.loads(proc.stdout)).values()) == {"ran"}
    locks = [lock(first), lock(second)]
    assert set(locks[0]) == set(locks[1]) == {"prepare", "train", "evaluate"}
    for stage in locks[0]:
        outs = [{o["path"]: o["md5"] for o in lk[stage].get("outs", [])} for lk in locks]
        assert outs[0] == outs[1], stage
        assert outs[0], stage
    assert (first.path / "dvc.lock").read_bytes() == (second.path / "dvc.lock").read_bytes()


def test_difference_in_an_output_directory_is_attributed_to_its_stage(flaky: Project,
                                                                      tmp_path: Path) -> None:
    proc, report = _verify(flaky, "consume", tmp=tmp_path / "t")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    verdicts = _verdicts(report)
    assert report["root_cause"] == "split"
    assert verdicts["split"]["files"] == ["parts"]
    assert verdicts["consume"]["caused_by"] == "split"


def test_absolute_path_in_output_is_named_as_the_likely_cause(flaky: Project,
                                                              tmp_path: Path) -> None:
    proc, report = _verify(flaky, "where", tmp=tmp_path / "t")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    [hint] = _verdicts(report)["where"]["hints"]
    assert hint == "'w.txt' contains an absolute path of the build directory"


def test_verify_does_not_write_into_a_shared_cache(tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    proj = init_repo(tmp_path / "p")
    assert proj.dvc("config", "cache.dir", str(shared)).returncode == 0
    proj.write("stages/rand.yaml", FLAKY["stages/rand.yaml"])
    assert proj.run("run").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built into a shared cache")
    before = _tree(shared)
    assert before
    proc, report = _verify(proj, tmp=tmp_path / "t")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert report["root_cause"] == "rand"
    assert _tree(shared) == before
