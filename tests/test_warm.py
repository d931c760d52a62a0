"""Warm starts: a hermetic `python -m ...` / `python x.py` stage forked from a warm interpreter
runs as a fresh interpreter would (same arguments, paths, environment, results, failures),
never imports the project's code ahead, and leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WARM_SHARE, Project, _env
from tests.scenario import lock, new_project

PROBE = """
import json, os, sys
AHEAD = "numpy" in sys.modules  # imported ahead by a warm interpreter, or not yet
import numpy
FIXED = ("PYTHONHASHSEED", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MLBUILD_SEED", "DVC_STAGE")
record = {
    "ahead": AHEAD, "argv": sys.argv, "path0": sys.path[0], "name": __name__,
    "file": __file__, "spec": __spec__.name if __spec__ else None, "cwd": os.getcwd(),
    "env": sorted(os.environ), "fixed": {k: os.environ.get(k) for k in FIXED},
    "hash": hash("mlbuild"), "pycache": sys.pycache_prefix is not None,
    "main": sorted(k for k in vars(sys.modules["__main__"]) if not k.startswith("__")),
    "stdin": sys.stdin.read(), "parent": os.getppid(),
}
print("hello from the probe")
json.dump(record, open("probe.json", "w"), sort_keys=True)
"""
FILES = {
    "stages/__init__.py": "",
    "stages/probe.py": PROBE,
    "stages/probe.yaml": "cmd: python -m stages.probe --flag value\nouts: [probe.json]\n",
    "tools/run.py": PROBE.replace("probe.json", "script.json"),
    "stages/script.yaml": "cmd: python tools/run.py a b\nouts: [script.json]\n",
}
COLD = {"MLBUILD_WARM": "0"}


@pytest.fixture(autouse=True)
def _own_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every build here starts and ends its own pool, as outside the suite."""
    monkeypatch.delenv(WARM_SHARE, raising=False)


def _project(tmp_path: Path, files: dict[str, str] | None = None) -> Project:
    return new_project(tmp_path / "proj", files or FILES)


def _read(proj: Project, name: str) -> dict[str, Any]:
    return dict(json.loads((proj.path / name).read_text()))


def _build(proj: Project, env: dict[str, str] | None = None) -> None:
    proc = proj.run("run", "-f", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_a_warm_stage_runs_as_a_fresh_interpreter_would(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    _build(proj)
    warm = {n: _read(proj, n) for n in ("probe.json", "script.json")}
    log = proj.path / ".dvc" / "tmp" / "mlbuild" / "logs" / "probe.out"
    assert log.read_text() == "hello from the probe\n"
    _build(proj, COLD)
    cold = {n: _read(proj, n) for n in ("probe.json", "script.json")}
    for name, record in warm.items():
        assert record.pop("ahead") is True  # numpy came from the warm interpreter
        assert cold[name].pop("ahead") is False
        assert record.pop("parent") != cold[name].pop("parent")
        assert record == cold[name]
    assert warm["probe.json"]["argv"][1:] == ["--flag", "value"]
    assert warm["probe.json"]["spec"] == "stages.probe"
    assert warm["script.json"]["argv"] == ["tools/run.py", "a", "b"]
    assert warm["script.json"]["path0"] == str((proj.path / "tools").resolve())
    assert warm["probe.json"]["main"] == ["AHEAD", "FIXED", "json", "numpy", "os", "sys"]


def test_failures_read_the_same_warm_and_cold(tmp_path: Path) -> None:
    files = {
        "stages/__init__.py": "",
        "stages/boom.py": "import numpy\nraise ValueError('kaboom')\n",
        "stages/boom.yaml": "cmd: python -m stages.boom\nouts: [never.txt]\n",
        "stages/quit.py": "import sys, numpy\nprint('bye', file=sys.stderr)\nsys.exit(3)\n",
        "stages/quit.yaml": "cmd: python -m stages.quit\nouts: [never2.txt]\n",
    }
    proj = _project(tmp_path, files)
    messages = []
    for env in (None, COLD):
        proc = proj.run("run", "-k", "--json", env=env)
        assert proc.returncode == 1, proc.stderr
        stages = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
        messages.append({k: v["message"] for k, v in stages.items()})
    assert messages[0] == messages[1]
    assert "command exited with code 1" in messages[0]["boom"]
    assert "ValueError: kaboom" in messages[0]["boom"]
    assert "command exited with code 3: bye" in messages[0]["quit"]


def test_the_projects_own_modules_are_never_imported_ahead(tmp_path: Path) -> None:
    files = {
        "numpy.py": "VALUE = 'the project'\n",  # shadows the installed numpy for its stages
        "top.py": "import json, numpy\njson.dump(numpy.VALUE, open('top.json', 'w'))\n",
        "stages/top.yaml": "cmd: python top.py\nouts: [top.json]\n",
        "sub/numpy.py": "VALUE = 'sub'\n",  # only for a script run from sub/
        "sub/run.py": "import json, numpy\njson.dump(numpy.VALUE, open('sub.json', 'w'))\n",
        "sub/other.py": "import numpy.linalg\n",  # makes the pool import numpy ahead
        "stages/sub.yaml": "cmd: python sub/run.py\nouts: [sub.json]\n",
        "stages/real.py": "import json, numpy\n"
                          "json.dump(numpy.__name__, open('real.json', 'w'))\n",
        "stages/real.yaml": "cmd: python stages/real.py\nouts: [real.json]\n",
    }
    proj = _project(tmp_path, files)
    _build(proj)
    assert json.loads((proj.path / "top.json").read_text()) == "the project"
    assert json.loads((proj.path / "sub.json").read_text()) == "sub"


def test_a_sweep_shares_one_warm_interpreter_and_matches_a_cold_build(tmp_path: Path) -> None:
    files = {**FILES, "configs/config.yaml": "model:\n  lr: 0.1\n",
             "stages/probe.yaml": "cmd: python -m stages.probe\nparams: [model]\n"
                                  "outs: [probe.json]\n"}
    proj = _project(tmp_path, files)
    assert proj.run("compile").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "params")
    (tmp_path / "tmp").mkdir()
    tmp = {"TMPDIR": str(tmp_path / "tmp")}  # where the sweep's warm interpreters listen
    proc = proj.run("exp", "run", "model.lr=0.1,0.2,0.3", "-j", "2", "--json", env=tmp)
    assert proc.returncode == 0, proc.stderr
    names = [v["name"] for v in json.loads(proc.stdout)["variants"]]
    parents = set()
    for name in names:
        shown = proj.git("show", f"{_ref(proj, name)}:dvc.lock").stdout
        assert "probe.json" in shown
        assert proj.run("exp", "apply", name).returncode == 0
        record = _read(proj, "probe.json")
        assert record["ahead"] is True
        parents.add(record["parent"])
    assert len(parents) == 1  # every variant's probe was forked by the same warm interpreter
    assert not _alive(parents.pop())  # and it was shut down with the sweep
    assert not list((tmp_path / "tmp").glob("mlbuild-warm-*"))


def _alive(pid: int) -> bool:
    try:
        return b"_mlbuild_warm" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _ref(proj: Project, name: str) -> str:
    out = proj.git("for-each-ref", "--format=%(refname)", "refs/exps/").stdout.split()
    return next(r for r in out if r.endswith("/" + name))


def _ours(root: Path) -> list[int]:
    """Processes started for the project (its DVC_ROOT in their environment), not zombies."""
    markers = {f"DVC_ROOT={root}".encode(), f"DVC_ROOT={root.resolve()}".encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if markers & set((entry / "environ").read_bytes().split(b"\0")) and \
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _gone(root: Path, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _ours(root):
            return True
        time.sleep(0.1)
    return False


SLOW = {
    "stages/__init__.py": "",
    "stages/slow.py": "import time, numpy\nopen('started', 'w').close()\ntime.sleep(120)\n"
                      "open('out.txt', 'w').write('late')\n",
    "stages/slow.yaml": "cmd: python -m stages.slow\nouts: [out.txt]\n",
}


def _start_slow(proj: Project) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "mlbuild", "run"], cwd=proj.path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (proj.path / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


def test_ctrl_c_stops_a_warm_stage_and_kill_9_leaves_nothing_running(tmp_path: Path) -> None:
    proj = _project(tmp_path, SLOW)
    proc = _start_slow(proj)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _gone(proj.path)
    (proj.path / "started").unlink()
    proc = _start_slow(proj)
    os.kill(proc.pid, signal.SIGKILL)  # mlbuild only: its stage and warm interpreter follow
    proc.communicate(timeout=60)
    assert _gone(proj.path)
    assert not (proj.path / "out.txt").exists()
    assert not (proj.path / "dvc.lock").exists() or "slow" not in lock(proj)


def test_a_package_that_uses_the_network_when_imported_fails_warm_as_cold(
        tmp_path: Path) -> None:
    site = tmp_path / "site"  # an installed package, outside the project
    site.mkdir()
    (site / "netpkg.py").write_text(
        "import socket\nsocket.getaddrinfo('localhost', 9)\nVALUE = 1\n")
    files = {
        "stages/__init__.py": "",
        "stages/net.py": "import netpkg\nopen('out.txt', 'w').write(str(netpkg.VALUE))\n",
        "stages/net.yaml": "cmd: python -m stages.net\nouts: [out.txt]\n",
    }
    proj = _project(tmp_path, files)
    messages = []
    for extra in ({}, COLD):
        proc = proj.run("run", "--json", env={"PYTHONPATH": str(site), **extra})
        assert proc.returncode == 1, proc.stderr
        messages.append(json.loads(proc.stdout)["stages"][0]["message"])
    assert messages[0] == messages[1]
    assert "used the network (getaddrinfo localhost:9)" in messages[0]


PICK = """
import json, sys
ahead = {name: name in sys.modules for name in ("numpy", "yaml")}
import PACKAGE
json.dump(ahead, open("ahead.json", "w"))
"""


def test_builds_sharing_a_pool_each_get_their_own_packages_imported_ahead(
        tmp_path: Path) -> None:
    """Two builds on one pool, as two variants of a sweep whose group choice picks another
    package: each is forked from an interpreter that imported its own stage's package."""
    # in /tmp, as mlbuild makes its own pools' directories: a socket's path has at most 107
    # bytes, and tmp_path's may leave too few of them
    pool = Path(tempfile.mkdtemp(prefix="mlbuild-warm-", dir="/tmp"))
    share = {WARM_SHARE: f"{pool}:{os.getpid()}"}
    seen = {}
    try:
        for package in ("numpy", "yaml"):
            proj = new_project(tmp_path / package, {
                "stages/__init__.py": "", "stages/pick.py": PICK.replace("PACKAGE", package),
                "stages/pick.yaml": "cmd: python -m stages.pick\nouts: [ahead.json]\n"})
            _build(proj, share)
            seen[package] = _read(proj, "ahead.json")
        assert len(list(pool.glob("*.sock"))) == 2
    finally:
        for pidfile in pool.glob("*.pid"):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        shutil.rmtree(pool, ignore_errors=True)
    assert seen == {"numpy": {"numpy": True, "yaml": False},
                    "yaml": {"numpy": False, "yaml": True}}
