"""Running one command as a real subprocess: wall-clock time and peak memory.

Each command is started with ``subprocess.Popen`` in its own session and reaped with
``os.wait4``, which returns the rusage of that one child. Its ``ru_maxrss`` is the peak
resident set of the child or of any descendant it waited for (Linux merges the children's
maximum into the parent's), so it covers the tool and the stage commands it runs. This is the
per-child form of ``getrusage(RUSAGE_CHILDREN)``, without the cumulative-maximum problem.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which command and why."""


@dataclass(frozen=True)
class Result:
    """One finished command."""

    argv: tuple[str, ...]
    seconds: float
    cpu_seconds: float
    maxrss_mb: float
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Series:
    """Repeated measurements of one thing: seconds (or MB) per repetition, plus the CPU time
    (user + system, of the command and the processes it waited for) and the peak RSS."""

    values: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    unit: str = "s"
    label: str = ""

    def add(self, value: float, rss_mb: float | None = None, cpu: float | None = None) -> None:
        """Record one repetition."""
        self.values.append(value)
        if rss_mb is not None:
            self.rss_mb.append(rss_mb)
        if cpu is not None:
            self.cpu.append(cpu)

    @property
    def median(self) -> float:
        """The median of the repetitions (NaN when there are none)."""
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def cpu_median(self) -> float | None:
        """The median CPU time over the repetitions."""
        return statistics.median(self.cpu) if self.cpu else None

    @property
    def peak_rss(self) -> float | None:
        """The largest peak RSS seen over the repetitions, in MB."""
        return max(self.rss_mb) if self.rss_mb else None


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Runner:
    """Runs commands with a fixed environment and a per-command timeout."""

    def __init__(self, env: Mapping[str, str], timeout: float, verbose: bool = False,
                 machine_wide: Sequence[str] = ()) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self.verbose = verbose
        # programs whose work happens in processes that are not their children (mlbuild's
        # resident server forks the command): their CPU time is the whole machine's
        self.machine_wide = set(machine_wide)

    def run(
        self, argv: Sequence[str], cwd: Path, *, check: bool = True,
        timeout: float | None = None,
    ) -> Result:
        """Run *argv* in *cwd*; time it and return its output. Raise BenchError on failure."""
        limit = timeout or self.timeout
        killed = threading.Event()
        whole = argv[0] in self.machine_wide
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            busy = machine_cpu() if whole else 0.0
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    list(argv), cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True,
                )
            except OSError as exc:
                raise BenchError(f"cannot start {argv[0]!r}: {exc}") from exc

            def _kill() -> None:
                killed.set()
                _kill_group(proc.pid)

            timer = threading.Timer(limit, _kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                timer.cancel()
            seconds = time.perf_counter() - start
            cpu = machine_cpu() - busy if whole else usage.ru_utime + usage.ru_stime
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        result = Result(tuple(argv), seconds, cpu,
                        usage.ru_maxrss / 1024.0, proc.returncode, stdout, stderr)
        if self.verbose:
            print(f"    [{seconds:8.3f}s cpu {result.cpu_seconds:7.3f}s {result.maxrss_mb:7.1f}MB "
                  f"rc={proc.returncode}] "
                  f"{' '.join(argv)}  (in {cwd.name})", flush=True)
        if killed.is_set():
            raise BenchError(f"timed out after {limit:.0f}s: {' '.join(argv)} (in {cwd})")
        if check and proc.returncode != 0:
            raise BenchError(
                f"exit code {proc.returncode}: {' '.join(argv)} (in {cwd})\n"
                f"--- stdout (tail) ---\n{_tail(stdout)}\n--- stderr (tail) ---\n{_tail(stderr)}"
            )
        return result


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat: user, nice,
    system, irq, softirq)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
