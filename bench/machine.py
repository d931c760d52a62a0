"""Facts about the machine and the software under test, for RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.projects import Tools

REPO = Path(__file__).resolve().parents[1]


def _out(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    if res.returncode != 0:
        return "?"
    text = (res.stdout or res.stderr).strip()
    return text.splitlines()[0] if text else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load() -> str:
    """1/5/15-minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _journal(path: Path) -> str:
    """', an ext4 without a journal' when the filesystem holding *path* is one (Linux)."""
    device = _out(["findmnt", "-n", "-o", "SOURCE", "-T", str(path)])
    task = Path("/sys/fs/ext4") / Path(device).name / "journal_task"
    try:
        return ", ext4 without a journal" if task.read_text().strip() == "<none>" else ""
    except OSError:
        return ""


def facts(tools: Tools, scratch: Path, env: dict[str, str]) -> dict[str, str]:
    """Machine and version facts, collected at the start of a run."""
    dirty = _out(["git", "status", "--porcelain", "--untracked-files=no"], REPO)
    commit = _out(["git", "rev-parse", "--short", "HEAD"], REPO)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "memory": _mem_total(),
        "OS": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0] + f" ({sys.executable})",
        "dvc": _out([tools.dvc, "--version"], env=env),
        "mlbuild": _out([tools.mlbuild, "--version"], env=env) + f" (git {commit}"
                   + (", with uncommitted changes)" if dirty and dirty != "?" else ")"),
        "scratch filesystem": f"{_out(['stat', '-f', '-c', '%T', str(scratch)])}{_journal(scratch)}"
                              f" ({scratch}); trees removed during the run are deleted at its "
                              "end (bench/projects.py, defer_removals)",
        "load average at start (1/5/15 min)": load(),
    }
