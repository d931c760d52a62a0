"""`mlbuild run -j N`: order is respected, independent stages overlap, failures stop cleanly.

Every stage runs stamp.py, which records its output's name and the [start, end] wall-clock
interval of its run into its output, after checking that its upstream outputs are complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Project
from tests.scenario import dvc_status, lock, md5, new_project, outcomes, stale

STAMP = """\
import sys, time
out, seconds, *ups = sys.argv[1:]
start = time.time()
for up in ups:
    name, _, end = open(up).read().split()
    assert name == up and float(end) <= start, f"{up} incomplete or not finished before {out}"
time.sleep(float(seconds))
if out == "fail.txt":
    sys.exit(3)
with open(out, "w") as fobj:
    fobj.write(f"{out} {start:.6f} {time.time():.6f}\\n")
"""
BRANCHES = ["b1", "b2", "b3", "b4"]


def _stage(name: str, seconds: float, ups: list[str]) -> str:
    deps = "".join(f"      - {u}.txt\n" for u in ups)
    args = " ".join(f"{u}.txt" for u in ups)
    return (f"  {name}:\n    cmd: python stamp.py {name}.txt {seconds} {args}\n"
            f"    deps:\n      - stamp.py\n{deps}    outs:\n      - {name}.txt\n")


def _project(dest: Path, stages: list[tuple[str, float, list[str]]]) -> Project:
    pipeline = "stages:\n" + "".join(_stage(*s) for s in stages)
    return new_project(dest, {"dvc.yaml": pipeline, "stamp.py": STAMP})


def _interval(proj: Project, name: str) -> tuple[float, float]:
    out, start, end = proj.read(f"{name}.txt").split()
    assert out == f"{name}.txt"  # each output holds what its own stage wrote
    return float(start), float(end)


def _consistent(proj: Project, names: list[str]) -> None:
    """Each built stage's lock entry describes exactly the output on disk."""
    entries = lock(proj)
    for name in names:
        assert entries[name]["outs"][0]["md5"] == md5(proj, f"{name}.txt"), name


def test_diamond_respects_edges_and_overlaps_independent_stages(tmp_path: Path) -> None:
    proj = _project(tmp_path / "p", [
        ("root", 0.2, []),
        *((b, 1.5, ["root"]) for b in BRANCHES),
        ("join", 0.1, BRANCHES),
    ])
    result = outcomes(proj, "-j", "4")
    names = ["root", *BRANCHES, "join"]
    assert result == dict.fromkeys(names, "ran")
    spans = {n: _interval(proj, n) for n in names}
    for branch in BRANCHES:
        assert spans[branch][0] >= spans["root"][1]
        assert spans["join"][0] >= spans[branch][1]
    # the four branches ran at the same time: every one started before any one ended
    assert max(spans[b][0] for b in BRANCHES) < min(spans[b][1] for b in BRANCHES)
    _consistent(proj, names)
    assert dvc_status(proj) == {}


def test_jobs_limit_caps_how_many_stages_overlap(tmp_path: Path) -> None:
    proj = _project(tmp_path / "p", [(b, 0.5, []) for b in BRANCHES])
    outcomes(proj, "-j", "2")
    spans = sorted(_interval(proj, b) for b in BRANCHES)
    for i, (start, _) in enumerate(spans):
        running = sum(1 for s, e in spans[:i] if e > start)
        assert running <= 1, spans  # at most one other stage still running at any start


def _failing(dest: Path) -> Project:
    return _project(dest, [
        ("slow", 1.5, []),
        ("fail", 0.3, []),
        ("after_slow", 0.0, ["slow"]),
        ("after_fail", 0.0, ["fail"]),
    ])


def test_failure_stops_new_stages_and_lets_running_ones_finish(tmp_path: Path) -> None:
    proj = _failing(tmp_path / "p")
    proc = proj.run("run", "-j", "2")
    assert proc.returncode == 1, proc.stderr
    assert "fail" in proc.stderr
    assert (proj.path / "slow.txt").is_file()  # it was running: it finished and was recorded
    assert set(lock(proj)) == {"slow"}
    _consistent(proj, ["slow"])
    assert not (proj.path / "after_slow.txt").exists()  # not started after the failure
    assert not (proj.path / "fail.txt").exists()
    assert set(dvc_status(proj)) == {"fail", "after_slow", "after_fail"}
    assert set(stale(proj)) == {"fail", "after_slow", "after_fail"}


def test_keep_going_completes_the_independent_branch(tmp_path: Path) -> None:
    proj = _failing(tmp_path / "p")
    proc = proj.run("run", "-j", "2", "--keep-going", "--json")
    assert proc.returncode == 1, proc.stderr
    result = proj.outcomes(json.loads(proc.stdout))
    assert result == {"slow": "ran", "fail": "failed", "after_slow": "ran",
                      "after_fail": "skipped"}
    assert _interval(proj, "after_slow")[0] >= _interval(proj, "slow")[1]
    assert set(lock(proj)) == {"slow", "after_slow"}
    _consistent(proj, ["slow", "after_slow"])
    assert set(dvc_status(proj)) == {"fail", "after_fail"}
