"""The `mlbuild` console script and its resident server (mlbuild/launch): a command runs in a
process forked from a server that imported mlbuild already, and behaves as it does in a new
interpreter: output, exit codes, Ctrl-C on a terminal, kill -9 of the client, a command
killed by a signal, a stale or refused server, and where no server is used at all."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlbuild.dvcfmt.repolock import describe
from mlbuild.launch.server import running
from tests.conftest import WARM_SHARE, Project, _env

pytestmark = pytest.mark.xdist_group("resident")  # one worker: one server per fingerprint

SCRIPT = str(Path(sys.executable).with_name("mlbuild"))  # the console script, as installed
# a stage that writes the chain of processes above it: (pid, command line) up to init
PROBE = """\
import json, os

def parent(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])

chain, pid = [], os.getpid()
while pid > 1:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        chain.append([pid, cmdline.read().replace(b"\\0", b" ").decode().strip()])
    pid = parent(pid)
umask = os.umask(0)
with open("probe.txt", "w") as out:
    json.dump({"chain": chain, "umask": umask}, out)
"""
DVC_YAML = """\
stages:
  probe:
    cmd: python probe.py
    deps: [probe.py]
    outs: [probe.txt]
  slow:
    cmd: python -c "import time; time.sleep(60)" && echo done > slow.txt
    outs: [slow.txt]
"""


@pytest.fixture
def resident(project: Project) -> Iterator[tuple[Project, dict[str, str]]]:
    """A project and an environment with the server switched on, its sockets under a runtime
    directory of the test's own; every server started there is stopped at the end."""
    run = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))  # a socket's path: < 108 bytes
    env = _env({"XDG_RUNTIME_DIR": str(run)})
    del env["MLBUILD_SERVER"]
    env.pop(WARM_SHARE, None)  # each build its own warm-start pool, in its own session
    project.write("probe.py", PROBE)
    project.write("dvc.yaml", DVC_YAML)
    project.git("add", "-A")
    project.git("commit", "-qm", "probe")
    try:
        yield project, env
    finally:
        for pid in running(run / "mlbuild").values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(run, ignore_errors=True)


def mlbuild(proj: Project, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The console script, as a user's shell runs it."""
    return subprocess.run([SCRIPT, *args], cwd=proj.path, env=env, capture_output=True,
                          text=True, timeout=120)


def server_pid(env: dict[str, str], timeout: float = 60) -> int:
    """The pid of the (one) server listening under the runtime directory, once it listens."""
    folder = Path(env["XDG_RUNTIME_DIR"], "mlbuild")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = running(folder)
        if len(servers) == 1 and list(folder.glob("*.sock")):
            return next(iter(servers.values()))
        refused = list(folder.glob("*.refused"))
        assert not refused, refused[0].read_text()
        time.sleep(0.1)
    raise AssertionError(f"no server listening in {folder}: {list(folder.iterdir())}")


def chain(proj: Project) -> list[tuple[int, str]]:
    """The probe stage's processes above it."""
    return [(pid, line) for pid, line in json.loads(proj.read("probe.txt"))["chain"]]


def alive(pid: int) -> bool:
    """Whether *pid* runs (a zombie nobody reaped yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def forked_by(proj: Project, server: int) -> bool:
    """Whether the probe ran under a command titled `mlbuild run ...` that the server's
    monitor forked (command -> monitor -> server)."""
    found = chain(proj)
    pids = [pid for pid, _ in found]
    for index, (_pid, line) in enumerate(found):
        if line.startswith("mlbuild run") and pids[index + 2:index + 3] == [server]:
            return True
    return False


def test_a_command_is_forked_from_the_server_and_answers_as_without_it(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    first = mlbuild(proj, env, "status")  # no server yet: runs in the client, starts one
    assert first.returncode == 0, first.stderr
    server = server_pid(env)
    built = mlbuild(proj, env, "run", "probe")
    assert built.returncode == 0, built.stderr
    assert forked_by(proj, server), chain(proj)
    assert "built probe" in built.stdout
    off = {**env, "MLBUILD_SERVER": "0"}
    for args in (["status", "--json"], ["stauts"], ["run", "nosuch"], ["--version"], ["dag"],
                 ["log", "--json", "-n", "1"]):
        served, here = mlbuild(proj, env, *args), mlbuild(proj, off, *args)
        assert (served.returncode, served.stdout, served.stderr) == \
            (here.returncode, here.stdout, here.stderr), args
    assert "No such command 'stauts'" in mlbuild(proj, env, "stauts").stderr
    # the real DVC agrees with what the forked command recorded
    assert "probe" not in subprocess.run(["dvc", "status", "probe"], cwd=proj.path, env=off,
                                         capture_output=True, text=True).stdout


def test_ctrl_c_on_a_terminal_stops_the_build_as_without_the_server(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    mlbuild(proj, env, "status")
    server_pid(env)
    results = {}
    for mode in ("served", "here"):
        run_env = {**env, "TERM": "xterm-256color"}
        if mode == "here":
            run_env["MLBUILD_SERVER"] = "0"
        results[mode] = _interrupt_in_terminal(proj, run_env)
    assert results["served"][2] and not results["here"][2]  # forked from the server or not
    for code, text, _forked in results.values():
        assert code == 130, text
        assert "interrupted by SIGINT; running stages were stopped" in text
        assert "slow" in text  # the live display drew the running stage on the terminal
    assert not (proj.path / "slow.txt").exists() and not _stage_processes()
    assert "slow" not in proj.read("dvc.lock") if (proj.path / "dvc.lock").exists() else True


def _interrupt_in_terminal(proj: Project, env: dict[str, str]) -> tuple[int, str, bool]:
    """`mlbuild run slow` on a pseudo-terminal that is its controlling terminal; Ctrl-C
    typed once the stage runs. The exit code, the terminal's text, and whether the build
    ran in a process the server forked."""
    leader, follower = pty.openpty()
    # util-linux's setsid -c: a session of its own with the terminal as its controlling one
    proc = subprocess.Popen(["setsid", "-c", SCRIPT, "run", "slow"], cwd=proj.path, env=env,
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    typed = forked = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not typed and _stage_processes():
            with contextlib.suppress(AssertionError):
                forked = bool(_command_of(_stage_processes()[0]))
            time.sleep(0.3)
            os.write(leader, b"\x03")
            typed = True
        if select.select([leader], [], [], 0.1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), out.decode(errors="replace"), forked


def _stage_processes() -> list[int]:
    """pids of the slow stage's command, wherever it runs."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and b"time.sleep(60)" in (entry / "cmdline").read_bytes() \
                    and b"-c" in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def _wait(predicate: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _command_of(stage: int) -> int:
    """The mlbuild command a stage runs under: the nearest ancestor titled `mlbuild ...`."""
    pid = stage
    while pid > 1:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        if title.startswith(b"mlbuild run"):
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError(f"no forked command above stage {stage}")


def _slow_build_served(proj: Project, env: dict[str, str]
                       ) -> tuple[subprocess.Popen[bytes], int]:
    """`mlbuild run slow` through a server, once its stage runs: the client, the command."""
    mlbuild(proj, env, "status")
    server_pid(env)
    client = subprocess.Popen([SCRIPT, "run", "slow"], cwd=proj.path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait(_stage_processes), "the slow stage never started"
    return client, _command_of(_stage_processes()[0])


def test_kill_9_of_the_client_stops_the_command_and_its_stages(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    client, command = _slow_build_served(proj, env)
    # the project lock names the forked command as mlbuild's, not as the server's python
    assert describe(command) == ("mlbuild", "mlbuild run slow")
    client.kill()
    client.wait()
    assert _wait(lambda: not _stage_processes() and not alive(command))
    status = mlbuild(proj, {**env, "MLBUILD_SERVER": "0"}, "status", "--json")
    stale = {s["stage"] for s in json.loads(status.stdout)["stages"] if s["stale"]}
    assert "slow" in stale and not (proj.path / "slow.txt").exists()


def test_a_command_killed_by_a_signal_kills_its_client_alike(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    client, command = _slow_build_served(proj, env)
    os.kill(command, signal.SIGKILL)
    assert client.wait(timeout=30) == -signal.SIGKILL
    assert _wait(lambda: not _stage_processes())  # the watcher took the stage down
    terminated = subprocess.Popen([SCRIPT, "run", "slow"], cwd=proj.path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _wait(_stage_processes), "the slow stage never started"
    terminated.terminate()  # the client's SIGTERM reaches the command: mlbuild's own exit
    _, err = terminated.communicate(timeout=30)
    assert terminated.returncode == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err


def test_what_the_server_cannot_reproduce_runs_in_the_client(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    # a site-packages folder of the test's own on the path: installing a package changes
    # its mtime, which the fingerprint holds (as mlbuild's source files' mtimes)
    packages = proj.path.parent / "extra" / "site-packages"
    packages.mkdir(parents=True)
    env = {**env, "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{packages}"}
    mlbuild(proj, env, "status")
    server = server_pid(env)
    # HOME with another value (libraries find their settings there): run here
    home = proj.path.parent / "home"
    home.mkdir()
    assert mlbuild(proj, {**env, "HOME": str(home)}, "run", "--force", "probe").returncode == 0
    assert not forked_by(proj, server) and any(SCRIPT in line for _, line in chain(proj))
    # a package installed under the server: run here, and the stale server goes
    time.sleep(0.01)  # a new mtime, whatever the filesystem's clock tick
    (packages / "newly_installed.pth").write_text("")
    assert mlbuild(proj, env, "run", "--force", "probe").returncode == 0
    assert not forked_by(proj, server) and any(SCRIPT in line for _, line in chain(proj))
    # it started the next server, for the new fingerprint, and that one sent the old away
    assert _wait(lambda: not alive(server))
    renewed = server_pid(env)
    assert renewed != server
    # the next server to start removes the files the old key left (its lock)
    os.kill(renewed, signal.SIGTERM)
    assert _wait(lambda: not alive(renewed))
    mlbuild(proj, env, "status")
    server_pid(env)
    folder = Path(env["XDG_RUNTIME_DIR"], "mlbuild")
    assert _wait(lambda: len({p.name.partition(".")[0] for p in folder.iterdir()}) == 1), \
        sorted(p.name for p in folder.iterdir())


def test_no_server_for_remotes_when_switched_off_or_in_an_open_directory(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    folder = Path(env["XDG_RUNTIME_DIR"], "mlbuild")
    off = {**env, "MLBUILD_SERVER": "0"}
    for args in (["push"], ["pull"], ["exp", "push", "origin"], ["model", "get", "x"],
                 ["data", "status"], ["run", "--pull"], ["run", "-r", "origin"]):
        served, here = mlbuild(proj, env, *args), mlbuild(proj, off, *args)  # may prompt
        assert served.returncode == here.returncode, args
    assert mlbuild(proj, off, "status").returncode == 0
    assert not folder.exists() or not any(folder.iterdir())
    folder.mkdir(mode=0o755, exist_ok=True)
    folder.chmod(0o755)  # another user could plant a socket there: never used
    assert mlbuild(proj, env, "status").returncode == 0
    assert not any(folder.iterdir())


def test_an_idle_server_exits_and_removes_its_socket(
        resident: tuple[Project, dict[str, str]]) -> None:
    proj, env = resident
    mlbuild(proj, {**env, "MLBUILD_SERVER_IDLE": "3"}, "status")
    server = server_pid(env)
    assert _wait(lambda: not alive(server), timeout=60)
    assert not list(Path(env["XDG_RUNTIME_DIR"], "mlbuild").glob("*.sock"))


def test_quick_commands_through_the_server_keep_their_exit_codes(
        resident: tuple[Project, dict[str, str]]) -> None:
    """A command that ends before its client reads the pid: both answers arrive together."""
    proj, env = resident
    mlbuild(proj, env, "status")
    server_pid(env)
    server = server_pid(env)
    for _ in range(15):
        assert mlbuild(proj, env, "--version").returncode == 0
        assert mlbuild(proj, env, "run", "nosuch").returncode == 2
    assert mlbuild(proj, env, "run", "--force", "probe").returncode == 0
    assert forked_by(proj, server)  # the same server answered all along


def test_a_client_with_another_umask_gets_a_server_of_its_own(
        resident: tuple[Project, dict[str, str]]) -> None:
    """The umask (read once by modules at import), like the limits, nice value, cgroup and
    namespaces, is part of a server's fingerprint: never the first client's for everyone."""
    proj, env = resident
    mlbuild(proj, env, "status")
    first = server_pid(env)
    strict = ["sh", "-c", f"umask 027 && exec {SCRIPT} run --force probe"]
    for _ in range(2):  # the first runs in the client and starts the 027 server
        proc = subprocess.run(strict, cwd=proj.path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proj.read("probe.txt"))["umask"] == 0o027
        assert _wait(lambda: len(running(Path(env["XDG_RUNTIME_DIR"], "mlbuild"))) == 2)
    servers = set(running(Path(env["XDG_RUNTIME_DIR"], "mlbuild")).values())
    assert first in servers and len(servers) == 2
    assert any(forked_by(proj, pid) for pid in servers - {first}), chain(proj)


def test_the_client_imports_only_what_the_interpreter_has_or_c_modules() -> None:
    """Every command pays the client's imports: no typing, enum, socket.py, pathlib."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import mlbuild.launch.client"], env=_env(), capture_output=True,
                          text=True, check=True)
    bare = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=_env(),
                          capture_output=True, text=True, check=True)

    def names(text: str) -> set[str]:
        return {line.rsplit("|", 1)[1].strip() for line in text.splitlines()
                if line.startswith("import time:") and "|" in line} - {"package"}

    added = names(proc.stderr) - names(bare.stderr)
    allowed = {"mlbuild", "mlbuild.launch", "mlbuild.launch.client", "marshal", "select",
               "zlib", "_socket", "_signal"}
    assert added <= allowed, sorted(added - allowed)


# a shell's job control, as bash does it: the job in a process group of its own, in the
# terminal's foreground; waitpid(WUNTRACED) sees it stop; `fg` continues it in the foreground
SHELL = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
job = subprocess.Popen(sys.argv[2:], process_group=0)
os.tcsetpgrp(0, job.pid)
_, status = os.waitpid(job.pid, os.WUNTRACED)
with open(sys.argv[1], "a") as log:
    log.write("stopped\\n" if os.WIFSTOPPED(status) else "ended\\n")
time.sleep(1.5)
os.tcsetpgrp(0, job.pid)
os.killpg(job.pid, signal.SIGCONT)
with open(sys.argv[1], "a") as log:
    log.write("continued\\n")
_, status = os.waitpid(job.pid, 0)
with open(sys.argv[1], "a") as log:
    log.write(f"exit {os.waitstatus_to_exitcode(status)}\\n")
"""


def test_ctrl_z_stops_the_command_with_its_client_and_fg_continues_both(
        resident: tuple[Project, dict[str, str]], tmp_path: Path) -> None:
    proj, env = resident
    mlbuild(proj, env, "status")
    server_pid(env)
    shell, log = tmp_path / "shell.py", tmp_path / "jobs.log"
    shell.write_text(SHELL)
    leader, follower = pty.openpty()
    session = subprocess.Popen(["setsid", "-c", sys.executable, str(shell), str(log), SCRIPT,
                                "run", "slow"], cwd=proj.path, env=env, stdin=follower,
                               stdout=follower, stderr=follower)
    os.close(follower)
    os.set_blocking(leader, False)
    try:
        assert _wait(lambda: _drain(leader) and bool(_stage_processes())), "no slow stage"
        command = _command_of(_stage_processes()[0])
        os.write(leader, b"\x1a")  # Ctrl-Z: the terminal's SIGTSTP to the foreground job
        assert _wait(lambda: _drain(leader) and log.exists() and "stopped" in log.read_text())
        assert _wait(lambda: _state(command) == "T")  # the command stopped with its client
        assert _wait(lambda: _drain(leader) and "continued" in log.read_text())
        assert _wait(lambda: _drain(leader) and _state(command) in "RS"), _state(command)
        os.write(leader, b"\x03")
        assert _wait(lambda: _drain(leader) and "exit" in log.read_text())
        assert log.read_text().split() == ["stopped", "continued", "exit", "130"]
    finally:
        session.kill()
        session.wait()
        os.close(leader)


def _drain(leader: int) -> bool:
    """Read what the terminal holds (a full terminal would block the live display)."""
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(leader, 65536):
            pass
    return True


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_runtime_directory_too_long_for_a_socket_path_still_gets_a_server(
        resident: tuple[Project, dict[str, str]]) -> None:
    """sun_path holds 107 bytes: a longer directory is reached through /proc/self/fd."""
    proj, env = resident
    deep = Path(env["XDG_RUNTIME_DIR"], "d" * 60, "e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    env = {**env, "XDG_RUNTIME_DIR": str(deep)}
    assert len(str(deep / "mlbuild" / "0123456789abcdef.sock")) > 108
    mlbuild(proj, env, "status")
    server = server_pid(env)
    assert mlbuild(proj, env, "run", "--force", "probe").returncode == 0
    assert forked_by(proj, server), chain(proj)
    os.kill(server, signal.SIGTERM)
    assert _wait(lambda: not alive(server))
