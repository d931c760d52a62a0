"""The test fixtures themselves: subprocesses find this checkout's mlbuild however they are
started, installed or not; a command forked from a zygote sees and ends as in a new
interpreter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from mlbuild import __version__
from tests.conftest import REPO, _cli, _env
from tests.zygote import UnavailableError, Zygote


def test_extra_pythonpath_is_added_to_the_checkout_not_put_in_its_place() -> None:
    env = _env({"PYTHONPATH": "/somewhere/site"})
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts[0] == str(REPO)
    assert "/somewhere/site" in parts


def test_other_extras_still_override() -> None:
    assert _env({"COLUMNS": "80"})["COLUMNS"] == "80"


PROBE = '''
import atexit, json, os, signal, sys, threading, time
what = sys.argv[1]
atexit.register(lambda: print("atexit ran", flush=True))
threading.Thread(target=lambda: (time.sleep(0.1), print("thread joined"))).start()
print(json.dumps({"argv": sys.argv[1:], "argv0": os.path.basename(sys.argv[0]),
                  "cwd": os.getcwd(), "path0": sys.path[0], "env": os.environ.get("PROBE"),
                  "stdin": sys.stdin.read(), "main": __name__,
                  "int": str(signal.getsignal(signal.SIGINT))}))
sys.stdout.flush()
if what == "code":
    sys.exit(3)
if what == "raise":
    raise ValueError("boom")
if what == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if what == "ctrl-c":
    raise KeyboardInterrupt
if what == "sleep":
    time.sleep(60)
'''


def _both(tmp_path: Path, what: str) -> tuple[CompletedProcess[str], CompletedProcess[str]]:
    """The probe run forked from a zygote and by a new interpreter."""
    (tmp_path / "probe.py").write_text(PROBE)
    env = _env({"PROBE": "given"})
    zygote = Zygote("probe", ("json", "threading"), _env())
    try:
        forked = zygote.run([what, "x y"], tmp_path, env, timeout=30)
    finally:
        zygote.close()
    fresh = subprocess.run([sys.executable, "-m", "probe", what, "x y"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    return forked, fresh


@pytest.mark.parametrize("what", ["ok", "code", "raise", "kill", "ctrl-c"])
def test_a_forked_command_sees_and_ends_as_in_a_new_interpreter(tmp_path: Path,
                                                                 what: str) -> None:
    forked, fresh = _both(tmp_path, what)
    assert forked.returncode == fresh.returncode
    assert forked.returncode == {"ok": 0, "code": 3, "raise": 1, "kill": -9, "ctrl-c": -2}[what]
    assert forked.stdout == fresh.stdout
    seen = json.loads(forked.stdout.splitlines()[0])
    assert seen == {"argv": [what, "x y"], "argv0": "probe.py", "cwd": str(tmp_path),
                    "path0": str(tmp_path), "env": "given", "stdin": "", "main": "__main__",
                    "int": str(signal.default_int_handler)}
    if what != "kill":  # threads joined and exit handlers run, as at a normal exit
        assert forked.stdout.splitlines()[1:] == ["thread joined", "atexit ran"]
    if what in ("raise", "ctrl-c"):
        assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1]
        assert forked.stderr.startswith("Traceback")


def test_a_forked_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    zygote = Zygote("probe", (), _env())
    try:
        with pytest.raises(subprocess.TimeoutExpired) as timed_out:
            zygote.run(["sleep"], tmp_path, _env(), timeout=1)
    finally:
        zygote.close()
    pid_line = str(timed_out.value.output)
    assert json.loads(pid_line.splitlines()[0])["argv"] == ["sleep"]


def test_what_a_fork_cannot_reproduce_gets_a_new_interpreter(tmp_path: Path) -> None:
    """Interpreter settings, the locale, colour settings, a variable an import read, a
    project module named like one imported ahead."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "reads.py").write_text("import os\nSEEN = os.environ.get('PROBE_AT_IMPORT')\n")
    base = {"PYTHONPATH": str(lib)}
    zygote = Zygote("probe", ("reads",), _env(base))
    try:
        assert zygote.usable(_env({**base, "MLBUILD_WARM": "0", "GIT_AUTHOR_NAME": "x"}),
                             tmp_path)
        for extra in ({"PYTHONPATH": "/somewhere/site"}, {"LC_ALL": "C"}, {"FORCE_COLOR": "1"},
                      {"PYTHONHASHSEED": "1"}, {"PROBE_AT_IMPORT": "1"}, {"HOME": "/else"}):
            assert not zygote.usable(_env({**base, **extra}), tmp_path), extra
        (tmp_path / "json.py").write_text("")  # would shadow the json imported ahead
        assert not zygote.usable(_env(base), tmp_path)
    finally:
        zygote.close()


def test_a_project_module_named_like_one_imported_ahead_fails_as_for_a_user(
        tmp_path: Path) -> None:
    (tmp_path / "typer.py").write_text("raise SystemExit('project typer.py shadowed typer')\n")
    forked = _cli("mlbuild", ("status",), tmp_path, _env(), 60)
    fresh = subprocess.run([sys.executable, "-m", "mlbuild", "status"], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=60)
    assert (forked.returncode, forked.stderr) == (fresh.returncode, fresh.stderr) == (
        1, "project typer.py shadowed typer\n")


def test_a_zygote_that_is_gone_leaves_commands_to_new_interpreters(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    zygote = Zygote("probe", (), _env())
    assert zygote.usable(_env(), tmp_path)
    assert zygote._proc is not None
    zygote._proc.kill()
    zygote._proc.wait()
    try:
        assert not zygote.usable(_env(), tmp_path)
        with pytest.raises(UnavailableError):
            zygote.run(["ok"], tmp_path, _env(), timeout=30)
    finally:
        zygote.close()


def test_mlbuild_through_the_zygote_answers_as_a_new_interpreter(tmp_path: Path) -> None:
    forked = _cli("mlbuild", ("--version",), tmp_path, _env(), 60)
    fresh = subprocess.run([sys.executable, "-m", "mlbuild", "--version"], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=60)
    assert (forked.returncode, forked.stdout) == (fresh.returncode, fresh.stdout) == (
        0, f"mlbuild {__version__}\n")
    bad = _cli("mlbuild", ("rnu",), tmp_path, _env(), 60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("mlbuild: error: No such command 'rnu'")


def test_a_zygote_whose_imports_start_a_thread_refuses_and_commands_run_fresh(
        tmp_path: Path) -> None:
    """numpy's import starts a thread: a fork of such an interpreter is not safe."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "spins.py").write_text("import threading, time\n"
                                  "threading.Thread(target=time.sleep, args=(60,), "
                                  "daemon=True).start()\n")
    zygote = Zygote("probe", ("spins",), _env({"PYTHONPATH": str(lib)}))
    try:
        assert not zygote.usable(_env({"PYTHONPATH": str(lib)}), tmp_path)
        assert zygote._proc is not None
        assert zygote._proc.wait(timeout=10) == 0  # it left at once
    finally:
        zygote.close()


def test_a_started_command_is_signalled_and_ends_as_a_popen_would(tmp_path: Path) -> None:
    """Zygote.start, which the serving tests start servers with: a real pid to signal, the
    output piped, the exit status a Popen would give."""
    (tmp_path / "probe.py").write_text(PROBE)
    env = _env({"PROBE": "given"})
    zygote = Zygote("probe", ("json", "threading"), _env())
    fresh = subprocess.Popen([sys.executable, "-m", "probe", "sleep"], cwd=tmp_path, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        started = zygote.start(["sleep"], tmp_path, env)
        for proc in (started, fresh):
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["argv"] == ["sleep"]
            assert proc.poll() is None
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        assert Path(f"/proc/{started.pid}/cwd").resolve() == tmp_path.resolve()
        ends = []
        for proc in (started, fresh):
            proc.terminate()
            _out, err = proc.communicate(timeout=30)  # the rest of stdout: timing
            ends.append((proc.returncode, err))
    finally:
        fresh.kill()
        zygote.close()
    assert ends[0] == ends[1] == (-signal.SIGTERM, "")


def test_what_an_import_sets_itself_may_already_be_set(tmp_path: Path) -> None:
    """A variable an import sets with setdefault (scikit-learn's KMP_* do) is the same for a
    command whose caller has it at that value: the zygote stays usable for it, not for
    another value."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "sets.py").write_text("import os\nos.environ.setdefault('PROBE_SET', 'yes')\n")
    base = {"PYTHONPATH": str(lib)}
    (tmp_path / "seer.py").write_text("import os, sets\nprint(os.environ.get('PROBE_SET'))\n")
    zygote = Zygote("seer", ("sets",), _env(base))
    try:
        assert zygote.usable(_env(base), tmp_path)
        assert zygote.usable(_env({**base, "PROBE_SET": "yes"}), tmp_path)
        assert not zygote.usable(_env({**base, "PROBE_SET": "no"}), tmp_path)
        # and the command sees it set, as one that imports `sets` in a new interpreter does
        forked = zygote.run([], tmp_path, _env(base), timeout=30)
    finally:
        zygote.close()
    fresh = subprocess.run([sys.executable, "-m", "seer"], cwd=tmp_path, env=_env(base),
                           capture_output=True, text=True, timeout=30)
    assert forked.stdout == fresh.stdout == "yes\n"
