"""Crash and concurrency safety: DVC's lock, kill -9, inputs changing mid-stage, full disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project, _env
from tests.errcheck import error_line
from tests.scenario import lock, md5, new_project, run_cache, stale

COPY = """
stages:
  copy:
    cmd: cp data.txt out.txt
    deps: [data.txt]
    outs: [out.txt]
"""


def wait_for(path: Path, timeout: float = 30) -> None:
    """Poll until *path* exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def gone(pid: int, timeout: float = 5) -> bool:
    """True once no process has *pid* (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def built(tmp_path: Path, pipeline: str, files: dict[str, str] | None = None) -> Project:
    """A committed project with *pipeline* as dvc.yaml, built once."""
    proj = new_project(tmp_path / "proj", {"dvc.yaml": pipeline, "data.txt": "v1\n",
                                           **(files or {})})
    proc = proj.run("run", "-j", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proj


# -- item 5: the stat cache sees an edit whose mtime was put back ----------------------------


def test_same_size_edit_with_mtime_restored_is_seen(tmp_path: Path) -> None:
    proj = built(tmp_path, COPY)
    data = proj.path / "data.txt"
    st = data.stat()
    data.write_text("v2\n")  # same size
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `touch -r` would
    assert data.stat().st_mtime_ns == st.st_mtime_ns
    assert stale(proj) == {"copy": ["dependency 'data.txt' modified"]}
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "v2\n"
    assert lock(proj)["copy"]["deps"][0]["md5"] == md5(proj, "data.txt") and stale(proj) == {}


# -- item 1: DVC's repository lock -----------------------------------------------------------

# The stage appends in two steps with a pause between, so two tools running it at once would
# leave "A B B" (or worse) in out.txt.
GATED = """
stages:
  gated:
    cmd: >-
      cat data.txt > out.txt && touch {started} &&
      while [ ! -e {go} ]; do sleep 0.05; done && echo B >> out.txt
    deps: [data.txt]
    outs: [out.txt]
"""


def gated(tmp_path: Path) -> tuple[Project, Path, Path]:
    """A committed, unbuilt project whose stage waits for a 'go' file (paths outside it)."""
    started, go = tmp_path / "started", tmp_path / "go"
    proj = new_project(tmp_path / "proj", {
        "dvc.yaml": GATED.format(started=started, go=go), "data.txt": "A\n"})
    return proj, started, go


def dvc_popen(proj: Project, *args: str) -> subprocess.Popen[str]:
    """Real DVC's CLI started in the background (output piped)."""
    return subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=proj.path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_dvc_commands_refuse_while_mlbuild_runs(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    first = proj.popen("run", "-j", "1")
    wait_for(started)
    repro = proj.dvc("repro")
    gc = proj.dvc("gc", "-w", "-f")
    go.touch()
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    for proc in (repro, gc):
        assert proc.returncode != 0 and "Unable to acquire lock" in proc.stderr, proc.stderr
    assert proj.read("out.txt") == "A\nB\n"
    assert stale(proj) == {}
    status = proj.dvc("status")
    assert "up to date" in status.stdout, status.stdout


def test_mlbuild_waits_for_dvc_repro_in_mid_stage(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    repro = dvc_popen(proj, "repro")
    wait_for(started)  # DVC runs the command with its repository lock released
    busy = proj.run("run", "--no-wait")
    line = error_line(busy, 2, "DVC command", "dvc repro", f"pid {repro.pid}", "--no-wait")
    assert "Traceback" not in line
    second = proj.popen("run", "-j", "1", "--json")
    assert second.stderr is not None
    waiting = second.stderr.readline()  # blocks until mlbuild says it waits (or exits)
    assert "waiting for it to finish" in waiting and "dvc repro" in waiting, waiting
    assert second.poll() is None
    go.touch()
    out, _ = repro.communicate(timeout=60)
    assert repro.returncode == 0, out
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    assert set(proj.outcomes(json.loads(stdout)).values()) == {"up-to-date"}
    assert proj.read("out.txt") == "A\nB\n"


def test_mlbuild_waits_for_a_dvc_command_holding_the_lock(tmp_path: Path) -> None:
    proj, _, go = gated(tmp_path)
    go.touch()
    holder = subprocess.Popen(  # DVC's own lock class, held as `dvc repro` holds it
        [sys.executable, "-c",
         "import sys, time; from dvc.lock import make_lock; "
         "l = make_lock('.dvc/tmp/lock'); l.lock(); print('locked', flush=True); "
         "sys.stdin.read()"],
        cwd=proj.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    busy = proj.run("run", "--no-wait")
    error_line(busy, 2, f"pid {holder.pid}", "--no-wait")
    waiting = [proj.popen(*args)  # started together, each given the same 2 s as before
               for args in (("gc", "-f"), ("data", "add", "data.txt"), ("push",), ("compile",))]
    time.sleep(2)
    for proc in waiting:
        assert proc.poll() is None, proc.communicate()  # it waits for the lock
    for proc in waiting:
        proc.kill()
        proc.communicate(timeout=10)
    holder.communicate("", timeout=10)
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "A\nB\n"


# -- item 2: a dependency edited while its stage runs ----------------------------------------


def test_dependency_edited_mid_stage_fails_it_and_records_nothing(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    go.touch()
    assert proj.run("run").returncode == 0
    go.unlink()
    started.unlink()
    before_lock, before_runs = proj.read("dvc.lock"), run_cache(proj)
    proj.write("data.txt", "A2\n")  # the build reads A2 ...
    first = proj.popen("run", "-j", "1")
    wait_for(started)
    proj.write("data.txt", "A3\n")  # ... and A3 is there when it ends
    go.touch()
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 1, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("mlbuild: error:")]
    assert len(lines) == 1 and "dependency 'data.txt' changed while the stage ran" in lines[0]
    assert "undeclared" not in stderr and "under outs" not in stderr, stderr
    assert proj.read("dvc.lock") == before_lock and run_cache(proj) == before_runs
    assert proj.read("out.txt") == "A\nB\n"  # the previous output is back
    started.unlink()
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "A3\nB\n" and stale(proj) == {}


def test_params_edited_mid_stage_fail_it(tmp_path: Path) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    proj = new_project(tmp_path / "proj", {"params.yaml": "lr: 1\n", "dvc.yaml": f"""
stages:
  train:
    cmd: touch {started} && while [ ! -e {go} ]; do sleep 0.05; done && cp params.yaml m.txt
    params: [lr]
    outs: [m.txt]
"""})
    first = proj.popen("run", "-j", "1")
    wait_for(started)
    proj.write("params.yaml", "lr: 2\n")
    go.touch()
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 1 and "'params.yaml' changed while the stage ran" in stderr
    assert not (proj.path / "dvc.lock").exists() and not (proj.path / "m.txt").exists()


# -- item 3: kill -9 of mlbuild never leaves its stages running ------------------------------

ORPHAN = """
stages:
  slow:
    cmd: >-
      cat data.txt > out.txt; echo $$ > {pids}/shell;
      (while [ ! -e {go} ]; do sleep 0.05; done; echo B >> out.txt) &
      echo $! > {pids}/child; wait
    deps: [data.txt]
    outs: [out.txt]
"""


def orphan_project(tmp_path: Path) -> tuple[Project, Path, Path]:
    """An unbuilt project whose stage leaves a child running until a 'go' file appears."""
    pids, go = tmp_path / "pids", tmp_path / "go"
    pids.mkdir()
    proj = new_project(tmp_path / "proj", {
        "dvc.yaml": ORPHAN.format(pids=pids, go=go), "data.txt": "A\n"})
    return proj, pids, go


def kill_mid_stage(proj: Project, pids: Path) -> tuple[int, int]:
    """Start a build, SIGKILL mlbuild once its stage runs; the stage's shell and child pids."""
    proc = proj.popen("run", "-j", "1")
    wait_for(pids / "child")
    time.sleep(0.1)  # the pid file is written before it is flushed to disk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return int((pids / "shell").read_text()), int((pids / "child").read_text())


def test_kill_9_of_mlbuild_kills_its_stage_and_children(tmp_path: Path) -> None:
    proj, pids, go = orphan_project(tmp_path)
    shell, child = kill_mid_stage(proj, pids)
    assert gone(shell) and gone(child), "the stage outlived mlbuild"
    go.touch()  # an orphan would now append a second B
    proc = proj.run("run", "--no-wait")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("out.txt") == "A\nB\n" and stale(proj) == {}


def test_next_run_kills_a_stage_left_running(tmp_path: Path) -> None:
    proj, pids, go = orphan_project(tmp_path)
    proc = proj.popen("run", "-j", "1")
    wait_for(pids / "child")
    time.sleep(0.1)
    watcher = int((proj.path / ".dvc/tmp/mlbuild/stages.pgid").read_text())
    os.kill(watcher, signal.SIGKILL)  # as if both were killed at once (OOM killer, pkill -9)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    shell, child = int((pids / "shell").read_text()), int((pids / "child").read_text())
    assert not gone(shell, timeout=0.5) and not gone(child, timeout=0.5)
    dry = proj.run("run", "--dry-run")  # the next run takes the lock: the orphans go first
    assert dry.returncode == 0, dry.stderr
    assert gone(shell) and gone(child), "the next run left the previous stage running"
    go.touch()
    assert proj.run("run").returncode == 0
    assert proj.read("out.txt") == "A\nB\n"


# -- item 6: what a kill -9 leaves behind -----------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


def plant_temporaries(proj: Project, pid: int) -> dict[str, bool]:
    """Temporary files as killed writers leave them -> whether they must survive a cleanup."""
    files = proj.path / ".dvc" / "cache" / "files" / "md5"
    planted = {
        f".dvc.lock.{pid}-0123456789ab.tmp": False,
        ".dvc.lock.k3j4_x9q.tmp": True,  # no pid: it may be the user's (.notes.20240101.tmp)
        f".out.txt.{pid}-0123456789ab.tmp": False,
        f".dvc/cache/files/md5/.ingest.{pid}-0123456789ab.tmp": False,
        f".dvc/cache/files/md5/{next(files.iterdir()).name}/.ab.{pid}-0123456789ab.tmp": False,
        f".dvc/tmp/mlbuild/.stat-cache.json.{pid}-0123456789ab.tmp": False,
        f".dvc.lock.{os.getpid()}-0123456789ab.tmp": True,  # its writer is alive
        ".notes.tmp": True,  # the user's
    }
    for rel in planted:
        (proj.path / rel).write_text("partial")
        if rel.startswith(".dvc/cache/"):  # a shared cache's files wait an hour (test_recovery)
            os.utime(proj.path / rel, (time.time() - 7200, time.time() - 7200))
    return planted


def test_next_run_puts_back_a_stranded_backup_and_removes_temporaries(tmp_path: Path) -> None:
    proj, started, go = gated(tmp_path)
    go.touch()
    assert proj.run("run").returncode == 0
    go.unlink()
    started.unlink()
    first = proj.popen("run", "--force", "-j", "1")
    wait_for(started)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert proj.read("out.txt") == "A\n"  # what the killed stage left: partial
    backups = proj.path / ".dvc" / "tmp" / "mlbuild" / "backup"
    assert any(backups.iterdir())
    planted = plant_temporaries(proj, dead_pid())
    go.touch()
    report = proj.run_json("run", "-j", "1")
    assert proj.outcomes(report) == {"gated": "up-to-date"}  # the backup is the built output
    assert proj.read("out.txt") == "A\nB\n"
    assert not any(backups.iterdir())
    for rel, kept in planted.items():
        assert (proj.path / rel).exists() == kept, rel
    porcelain = proj.git("status", "--porcelain").stdout.splitlines()
    assert {ln[3:] for ln in porcelain if ln.endswith(".tmp")} == {
        rel for rel, kept in planted.items() if kept}, porcelain


@pytest.mark.parametrize("command", [("gc", "-f"), ("data", "fsck", "--repair")])
def test_gc_and_fsck_report_and_remove_leftovers(tmp_path: Path, command: tuple[str, ...]
                                                 ) -> None:
    proj = built(tmp_path, COPY)
    planted = plant_temporaries(proj, dead_pid())
    box = proj.path / ".dvc/tmp/mlbuild/backup" / f"copy-{dead_pid()}-01234567"
    box.mkdir(parents=True)
    (box / "0").write_text("v0\n")
    (box / "moved.json").write_text(json.dumps([{"path": "out.txt", "aside": [str(box / "0")]}]))
    (proj.path / "out.txt").unlink()  # missing: the stranded backup is put back
    proc = proj.run(*command)
    assert proc.returncode == 0, proc.stderr
    assert "leftover" in proc.stdout and "put back: out.txt" in proc.stdout, proc.stdout
    assert proj.read("out.txt") == "v0\n" and not box.exists()
    for rel, kept in planted.items():
        assert (proj.path / rel).exists() == kept, rel


# -- item 8: a full disk ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs for the full-disk tests needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Fill the filesystem to the last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)


def leftovers(proj: Project) -> list[str]:
    """Temporary files anywhere in the project."""
    return [p.name for p in proj.path.rglob("*.tmp")]


def test_stage_that_fills_the_disk_names_the_filesystem(small_disk: Path) -> None:
    proj = new_project(small_disk / "proj", {"dvc.yaml": """
stages:
  fill:
    cmd: head -c 50000000 /dev/zero > big.bin
    outs: [big.bin]
"""})
    proc = proj.run("run")
    error_line(proc, 1, "stage 'fill'", "no space left on device", str(small_disk))
    assert not (proj.path / "big.bin").exists() and leftovers(proj) == []


def test_full_disk_at_the_dvc_lock_write_is_a_clear_error(small_disk: Path,
                                                           tmp_path: Path) -> None:
    started, go, pad = tmp_path / "started", tmp_path / "go", "x" * 40000
    proj = new_project(small_disk / "proj", {"data.txt": "A\n", "dvc.yaml": f"""
stages:
  s:
    cmd: >-
      cp data.txt out.txt && touch {started} &&
      while [ ! -e {go} ]; do sleep 0.05; done; true {pad}
    deps: [data.txt]
    outs: [{{out.txt: {{cache: false}}}}]
"""})  # the padding makes dvc.lock bigger than the few pages a finished stage frees
    first = proj.popen("run", "-j", "1")
    wait_for(started)
    fill(small_disk)
    go.touch()
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("mlbuild: error:")]
    assert len(errors) == 1 and "dvc.lock" in errors[0] and str(small_disk) in errors[0], stderr
    assert not (proj.path / "dvc.lock").exists() and leftovers(proj) == []


def test_full_disk_at_the_stat_cache_write_is_a_clear_error(small_disk: Path) -> None:
    proj = new_project(small_disk / "proj", {"dvc.yaml": COPY, "data.txt": "A\n"})
    assert proj.run("run").returncode == 0
    os.utime(proj.path / "data.txt")  # rehashed, so the stat cache has news to write
    fill(small_disk)
    proc = proj.run("run")
    error_line(proc, 1, "stat cache", "no space left on device", str(small_disk))
    assert leftovers(proj) == []


def test_hardlink_lock_setting_uses_dvcs_hardlink_lock(tmp_path: Path) -> None:
    proj, _, go = gated(tmp_path)
    go.touch()
    assert proj.dvc("config", "core.hardlink_lock", "true").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from dvc.lock import make_lock; "
         "l = make_lock('.dvc/tmp/lock', tmp_dir='.dvc/tmp', hardlink_lock=True); l.lock(); "
         "print('locked', flush=True); sys.stdin.read(); l.unlock()"],
        cwd=proj.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    error_line(proj.run("run", "--no-wait"), 2, "hardlink_lock", "--no-wait")
    holder.communicate("", timeout=10)
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr
    assert proj.read("out.txt") == "A\nB\n"


def test_kill_9_of_verify_stops_its_scratch_build_and_next_verify_cleans_up(
        tmp_path: Path) -> None:
    import tempfile

    started, go, pid = tmp_path / "started", tmp_path / "go", tmp_path / "pid"
    proj = new_project(tmp_path / "proj", {"data.txt": "A\n", "dvc.yaml": f"""
stages:
  s:
    cmd: >-
      cp data.txt out.txt; echo $$ > {pid}; touch {started};
      while [ ! -e {go} ]; do sleep 0.05; done
    deps: [data.txt]
    outs: [out.txt]
"""})
    go.touch()
    assert proj.run("run").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    go.unlink()
    started.unlink()
    verify = proj.popen("verify")
    wait_for(started)
    time.sleep(0.1)
    os.kill(verify.pid, signal.SIGKILL)
    verify.wait(timeout=10)
    assert gone(int(pid.read_text())), "the scratch build's stage outlived verify"
    stale_dirs = list(Path(tempfile.gettempdir()).glob(f"mlbuild-verify-{verify.pid}-*"))
    assert stale_dirs
    go.touch()
    again = proj.run("verify")
    assert again.returncode == 0, again.stderr + again.stdout
    assert not any(d.exists() for d in stale_dirs)
