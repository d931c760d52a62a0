"""Print the oldest Python 3.11+ interpreter on PATH that can make a venv (nothing if none)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NAMES = ("python3", "python3.11", "python3.12", "python3.13", "python3.14")


def _version(exe: str) -> tuple[int, ...] | None:
    """The interpreter's version, or None when it does not run or cannot make a venv."""
    code = "import sys, venv, ensurepip; print(*sys.version_info[:3])"
    try:
        out = subprocess.run([exe, "-c", code], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return tuple(int(part) for part in out.stdout.split())


def _candidates() -> set[str]:
    """Every python3 interpreter on PATH, by its real path."""
    found = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        for name in NAMES:
            exe = shutil.which(name, path=folder)
            if exe and "/.venv" not in exe:
                found.add(str(Path(exe).resolve()))
    return found


def main() -> None:
    """Print the oldest supported interpreter."""
    versions = {exe: _version(exe) for exe in _candidates()}
    usable = [(v, exe) for exe, v in versions.items() if v is not None and v >= (3, 11)]
    if usable:
        print(min(usable)[1])


if __name__ == "__main__":
    main()
