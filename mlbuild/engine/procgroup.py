"""Stage processes: one process group per build that never outlives mlbuild, even kill -9.

Every stage command joins the process group of a tiny watcher process started with the first
stage. The watcher reads a pipe from mlbuild; when the pipe closes without mlbuild saying
goodbye (mlbuild was killed), it kills the whole group, every stage and its children. It also
holds DVC's repository lock (an inherited descriptor of the same open file), so neither DVC nor
the next mlbuild run can start until the stages are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import Protocol

KILL_GRACE = 5.0  # seconds a stopped stage gets after SIGTERM before SIGKILL
GOODBYE = b"exit"
WATCHER = (
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
    "    signal.signal(s, signal.SIG_IGN)\n"
    "if not sys.stdin.buffer.read().endswith(b'exit'):\n"
    "    os.killpg(0, signal.SIGKILL)\n"
)


class Process(Protocol):
    """A running stage command: a Popen, or a child of a warm interpreter (engine/warm.py)."""

    pid: int

    def wait(self) -> int:
        """Wait for it to end; its exit status."""


class ProcessTable:
    """Running stage processes and their shared process group, so an interrupt (or the death
    of mlbuild) can stop them all."""

    def __init__(self, lock_fd: int | None = None, record: Path | None = None) -> None:
        self._procs: set[Process] = set()
        self._lock = threading.Lock()
        self._lock_fd = lock_fd
        self._record = record  # where the group id is noted for a run after a crash
        self._watcher: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self.interrupted = False

    def group(self) -> int | None:
        """The build's process group (started with the first stage); None if unavailable."""
        with self._lock:
            if self._watcher is None:
                try:
                    self._watcher = subprocess.Popen(
                        [sys.executable, "-I", "-S", "-c", WATCHER], stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0,
                        pass_fds=(self._lock_fd,) if self._lock_fd is not None else (),
                    )
                except OSError:
                    return None
                self._pgid = self._watcher.pid
                if self._record is not None:
                    with suppress(OSError):
                        self._record.parent.mkdir(parents=True, exist_ok=True)
                        self._record.write_text(f"{self._watcher.pid}\n")
            return self._watcher.pid if self._watcher.poll() is None else None

    def goodbye(self) -> None:
        """Tell the watcher no stage runs any more; it exits on its own (close() waits)."""
        watcher = self._watcher
        if watcher is None or watcher.stdin is None or watcher.stdin.closed:
            return
        with suppress(OSError):
            watcher.stdin.write(GOODBYE)
            watcher.stdin.close()

    def close(self) -> None:
        """Say goodbye to the watcher (if not yet said) and wait for it to exit: it holds
        the project lock's descriptor too."""
        self.goodbye()
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        with suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout=KILL_GRACE)
        if self._record is not None:
            self._record.unlink(missing_ok=True)

    def add(self, proc: Process) -> None:
        """Track a started stage process."""
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: Process) -> None:
        """Forget a finished stage process."""
        with self._lock:
            self._procs.discard(proc)

    def terminate_all(self) -> None:
        """Send SIGTERM to every running stage's process group, SIGKILL to what survives it."""
        self.interrupted = True
        self.signal_all(signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE, self.signal_all, (signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    def signal_all(self, signum: int) -> None:
        """Send *signum* to the process group of every running stage."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self.kill_group(proc, signum)

    def kill_group(self, proc: Process, signum: int) -> None:
        """Signal the group *proc* runs in (the watcher ignores all but SIGKILL); the shared
        group outlives a stage's shell, so its children are reached after the shell exited."""
        with suppress(OSError):
            os.killpg(self._pgid or proc.pid, signum)


def popen_group(procs: ProcessTable) -> dict[str, object]:
    """Popen arguments that put a stage into the build's process group (or, failing that, a
    session of its own, as before)."""
    pgid = procs.group()
    return {"process_group": pgid} if pgid is not None else {"start_new_session": True}


def kill_orphans(root: Path, record: Path) -> None:
    """Kill the stages a killed build left running (its watcher died too), and wait for them,
    so no stage starts beside its own previous process."""
    try:
        pgid = int(record.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    marker = f"DVC_ROOT={root}".encode()
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid and \
                    marker in (entry / "environ").read_bytes().split(b"\0"):
                members.append(int(entry.name))
    if members:
        with suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
        _wait_gone(members)
    record.unlink(missing_ok=True)


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
            return
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
