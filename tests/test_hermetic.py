"""Hermetic execution: undeclared I/O by path, network refusal, scrubbed and pinned environment,
and adoption mode (hand-written dvc.yaml) where every finding is a warning."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scenario import lock, new_project

SECRET = "shh-s3cr3t-4f9a1c"  # distinctive, so finding it anywhere means it leaked

READER = {
    "notes.txt": "private notes\n",
    "stages/reader.yaml": "cmd: python stages/reader.py\nouts: [out.txt]\n",
    "stages/reader.py": "from pathlib import Path\n\n"
                        "Path('out.txt').write_text(Path('notes.txt').read_text())\n",
}
WRITER = {
    "stages/writer.yaml": "cmd: python stages/writer.py\nouts: [out.txt]\n",
    "stages/writer.py": "from pathlib import Path\n\n"
                        "Path('out.txt').write_text('x')\nPath('extra.txt').write_text('y')\n",
}
DUMP_ENV = """
import json
import os
import time

from mlbuild import stage_seed, stage_threads

json.dump({"env": dict(os.environ), "seed": stage_seed(), "threads": stage_threads(),
           "tzname": list(time.tzname)}, open("env.json", "w"))
"""
# A hand-written pipeline (adoption mode): a Python reader and writer, and a shell writer.
ADOPTED = """
stages:
  reader:
    cmd: python -c "open('r.txt', 'w').write(open('notes.txt').read())"
    outs: [r.txt]
  writer:
    cmd: python -c "open('w.txt', 'w').write('w'); open('extra.txt', 'w').write('x')"
    outs: [w.txt]
  shell:
    cmd: echo s > s.txt && echo z > side.txt
    outs: [s.txt]
  envvar:
    cmd: python -c "import os; open('e.txt', 'w').write(os.environ.get('MY_SETTING', '-'))"
    outs: [e.txt]
"""


def _report(proc: Any) -> dict[str, Any]:
    return dict(json.loads(proc.stdout))


def _warnings(report: dict[str, Any]) -> dict[str, list[str]]:
    return {s["stage"]: s["warnings"] for s in report["stages"]}


@pytest.fixture
def listener() -> Iterator[int]:
    """A listening TCP socket on the loopback interface; yields its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def _connect_cmd(port: int, raw: bool = False) -> str:
    """A stage command connecting to the loopback port: through a name lookup, or raw."""
    connect = (f"s = socket.socket(); s.settimeout(10); s.connect(('127.0.0.1', {port}))" if raw
               else f"s = socket.create_connection(('127.0.0.1', {port}), timeout=10)")
    return f"python -c \"import socket; {connect}; s.close(); open('o.txt', 'w').write('ok')\""


def test_undeclared_read_fails_hermetic_stage_naming_the_path(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", READER)
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert ("stage 'reader' is hermetic and read undeclared input(s) 'notes.txt'; "
            "add '- notes.txt' under deps in stages/reader.yaml") in proc.stderr
    assert not (proj.path / "out.txt").exists()  # a failed stage leaves no output behind
    assert not (proj.path / "dvc.lock").exists() or "reader" not in lock(proj)
    # declared, it builds
    proj.write("stages/reader.yaml", "cmd: python stages/reader.py\ndeps: [notes.txt]\n"
                                     "outs: [out.txt]\n")
    report = proj.run_json("run")
    assert proj.outcomes(report) == {"reader": "ran"}
    assert _warnings(report) == {"reader": []}


def test_undeclared_reads_warn_setting_turns_the_failure_into_a_warning(tmp_path: Path) -> None:
    files = dict(READER)
    files["stages/reader.yaml"] += "hermetic: {undeclared_reads: warn}\n"
    proj = new_project(tmp_path / "p", files)
    report = proj.run_json("run")
    assert proj.outcomes(report) == {"reader": "ran"}
    [warning] = _warnings(report)["reader"]
    assert "read undeclared input(s) 'notes.txt'" in warning
    assert "add '- notes.txt' under deps in stages/reader.yaml" in warning


def test_temporary_files_renamed_onto_outputs_are_not_findings(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {
        "stages/atomic.yaml": "cmd: python stages/atomic.py\nouts: [model.bin]\n",
        "stages/atomic.py": "import os\n\nopen('model.bin.tmp', 'w').write('m')\n"
                            "assert open('model.bin.tmp').read() == 'm'\n"
                            "os.replace('model.bin.tmp', 'model.bin')\n",
    })
    report = proj.run_json("run")
    assert proj.outcomes(report) == {"atomic": "ran"}
    assert _warnings(report) == {"atomic": []}


def test_undeclared_write_fails_hermetic_stage_naming_the_path(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", WRITER)
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert ("stage 'writer' is hermetic and wrote undeclared output(s) 'extra.txt'; "
            "add '- extra.txt' under outs in stages/writer.yaml") in proc.stderr
    assert not (proj.path / "dvc.lock").exists() or "writer" not in lock(proj)


def test_adoption_mode_warns_with_path_and_line_to_add(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"notes.txt": "n\n", "dvc.yaml": ADOPTED})
    proc = proj.run("run", "--json", "-j", "1", env={"MY_SETTING": "from-caller"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = _report(proc)
    assert set(proj.outcomes(report).values()) == {"ran"}
    warnings = _warnings(report)
    assert warnings["reader"] == [
        "stage 'reader' read undeclared input(s) 'notes.txt'; "
        "add '- notes.txt' under stages.reader.deps in dvc.yaml"]
    assert warnings["writer"] == [
        "stage 'writer' wrote undeclared output(s) 'extra.txt'; "
        "add '- extra.txt' under stages.writer.outs in dvc.yaml"]
    # a non-Python command is seen through the workspace snapshot
    assert len(warnings["shell"]) == 1
    assert "'side.txt' changed" in warnings["shell"][0]
    assert "add '- side.txt' under stages.shell.outs in dvc.yaml" in warnings["shell"][0]
    # the caller's environment passes through, as under dvc repro, with a warning
    assert proj.read("e.txt") == "from-caller"
    assert "MY_SETTING" in warnings["envvar"][0]
    assert "'stages: {envvar: {env: [MY_SETTING]}}' in mlbuild.yaml" in warnings["envvar"][0]
    # the text report shows them too
    human = proj.run("run", "--force", "-j", "1", "reader")
    assert human.returncode == 0, human.stderr
    assert "warning: stage 'reader' read undeclared input(s) 'notes.txt'" in " ".join(
        human.stdout.split())


def test_strict_makes_adopted_stages_hermetic(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"notes.txt": "n\n", "dvc.yaml": ADOPTED})
    proc = proj.run("run", "--strict", "reader")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert ("stage 'reader' is hermetic and read undeclared input(s) 'notes.txt'; "
            "add '- notes.txt' under stages.reader.deps in dvc.yaml") in proc.stderr
    # strict: true in mlbuild.yaml does the same; per-stage settings pass a variable through
    proj.write("mlbuild.yaml", "strict: true\nstages:\n  envvar:\n    env: [MY_SETTING]\n")
    proc = proj.run("run", "writer", "envvar", "-k", "--json", env={"MY_SETTING": "kept"})
    assert proc.returncode == 1
    outcomes = proj.outcomes(_report(proc))
    assert outcomes == {"writer": "failed", "envvar": "ran"}
    assert proj.read("e.txt") == "kept"


@pytest.mark.parametrize("raw", [False, True], ids=["create_connection", "socket.connect"])
def test_network_is_refused_with_the_hermetic_message(tmp_path: Path, listener: int,
                                                      raw: bool) -> None:
    proj = new_project(tmp_path / "p", {"stages/net.yaml": f"""
        cmd: {_connect_cmd(listener, raw)}
        outs: [o.txt]
        """})
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "stage 'net' is hermetic" in proc.stderr
    assert f"127.0.0.1:{listener}" in proc.stderr
    assert "allow it with 'hermetic: {network: true}' in stages/net.yaml" in proc.stderr
    assert "network access is refused" in proj.read(".dvc/tmp/mlbuild/logs/net.err")
    assert not (proj.path / "o.txt").exists()


def test_network_true_allows_the_connection(tmp_path: Path, listener: int) -> None:
    proj = new_project(tmp_path / "p", {"stages/net.yaml": f"""
        cmd: {_connect_cmd(listener)}
        outs: [o.txt]
        hermetic: {{network: true}}
        """})
    report = proj.run_json("run")
    assert proj.outcomes(report) == {"net": "ran"}
    assert _warnings(report) == {"net": []}  # explicitly allowed: nothing to warn about
    assert proj.read("o.txt") == "ok"


def test_adopted_stage_may_use_the_network_unless_strict(tmp_path: Path, listener: int) -> None:
    pipeline = f"stages:\n  net:\n    cmd: {_connect_cmd(listener)}\n    outs: [o.txt]\n"
    proj = new_project(tmp_path / "p", {"dvc.yaml": pipeline})
    report = proj.run_json("run")
    assert proj.outcomes(report) == {"net": "ran"}
    [warning] = _warnings(report)["net"]
    assert f"used the network (getaddrinfo 127.0.0.1:{listener})" in warning
    assert "'stages: {net: {network: true}}' in mlbuild.yaml" in warning
    proc = proj.run("run", "--force", "--strict")
    assert proc.returncode == 1
    assert "network access is refused" in proc.stderr + proj.read(
        ".dvc/tmp/mlbuild/logs/net.err")
    proj.write("mlbuild.yaml", "stages:\n  net:\n    network: true\n")
    report = proj.run_json("run", "--force", "--strict")
    assert proj.outcomes(report) == {"net": "ran"}
    assert _warnings(report) == {"net": []}


def _tree_contains(root: Path, needle: bytes) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts
            and needle in p.read_bytes()]


def test_secrets_are_scrubbed_and_declared_variables_pass(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"stages/dump.yaml": """
        cmd: env | sort > env.txt && env
        outs: [env.txt]
        hermetic: {env: [MY_TOKEN]}
        """})
    proc = proj.run("run", env={"AWS_SECRET_ACCESS_KEY": SECRET, "MY_TOKEN": "tok-123",
                                "GITHUB_TOKEN": SECRET})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    dumped = proj.read("env.txt")
    assert "MY_TOKEN=tok-123" in dumped
    assert "AWS_SECRET_ACCESS_KEY" not in dumped
    assert "GITHUB_TOKEN" not in dumped
    assert "MY_TOKEN=tok-123" in proj.read(".dvc/tmp/mlbuild/logs/dump.out")  # the logs
    assert SECRET not in proc.stdout + proc.stderr
    # nowhere in the project: outputs, dvc.lock, logs, cache, run-cache, environment file
    assert _tree_contains(proj.path, SECRET.encode()) == []
    assert (proj.path / "dvc.lock").is_file()


def test_environment_is_pinned(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {
        "stages/dump.yaml": "cmd: python stages/dump.py\nouts: [env.json]\n"
                            "hermetic: {threads: 3, seed: 7}\n",
        "stages/dump.py": DUMP_ENV,
    })
    caller = {"TZ": "Asia/Tokyo", "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "16",
              "MKL_NUM_THREADS": "16", "LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8",
              "HOME": str(tmp_path / "callerhome"), "TMPDIR": str(tmp_path),
              "USER": "someone", "MLBUILD_SEED": "999"}
    proc = proj.run("run", env=caller)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    seen = json.loads(proj.read("env.json"))
    env = seen["env"]
    assert env["TZ"] == "UTC"
    assert seen["tzname"] == ["UTC", "UTC"]
    assert env["PYTHONHASHSEED"] == "0"
    assert env["LANG"] == env["LC_ALL"] == "C.UTF-8"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "MLBUILD_THREADS"):
        assert env[var] == "3", var
    assert env["MLBUILD_SEED"] == "7"
    assert (seen["seed"], seen["threads"]) == (7, 3)
    home = proj.path / ".dvc/tmp/mlbuild/home/dump"
    assert Path(env["HOME"]) == home
    assert Path(env["TMPDIR"]) == home / "tmp"
    assert "USER" not in env
    assert env["DVC_STAGE"] == "dump"
