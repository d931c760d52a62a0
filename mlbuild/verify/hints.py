"""Likely causes of an irreproducible output: environment drift, timestamps, absolute paths."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.files.layout import ENV_FILE

SCAN_BYTES = 64 * 1024 * 1024


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value


def environment_diff(expected: LockEntry, actual: LockEntry) -> list[str]:
    """'environment differs from dvc.lock: lightgbm 4.6.0 -> 4.7.0' when the recorded
    environment of the stage is not the one it was rebuilt in."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    _flatten("", expected.params.get(ENV_FILE, {}), old)
    _flatten("", actual.params.get(ENV_FILE, {}), new)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            name = key.split(".packages.", 1)[-1] if ".packages." in key else key
            changes.append(f"{name} {old.get(key, 'absent')} -> {new.get(key, 'absent')}")
    if not changes:
        return []
    shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
    return [f"environment differs from the one recorded in dvc.lock: {shown}"]


def _timestamp_patterns() -> list[bytes]:
    now = time.time()
    pats = set()
    for delta in (0, -86400):
        t = time.gmtime(now + delta)
        pats.add(time.strftime("%Y-%m-%d", t).encode())
        pats.add(time.strftime("%Y%m%d", t).encode())
        lt = time.localtime(now + delta)
        pats.add(time.strftime("%Y-%m-%d", lt).encode())
    return sorted(pats)


def _epoch_near_now(data: bytes) -> bool:
    now = int(time.time())
    for match in re.finditer(rb"(?<![0-9])1[0-9]{9}(?:\.[0-9]+)?(?![0-9])", data):
        if abs(float(match.group()) - now) < 2 * 86400:
            return True
    return False


def file_hints(workdir: Path, files: list[str], paths: list[Path]) -> list[str]:
    """Inspect rebuilt outputs for today's date, the current time or absolute paths."""
    hints = []
    for rel in files:
        target = workdir / rel
        blobs = [target] if target.is_file() else sorted(p for p in target.rglob("*")
                                                         if p.is_file())
        for blob in blobs[:200]:
            data = blob.read_bytes()[:SCAN_BYTES]
            name = blob.relative_to(workdir).as_posix()
            if any(str(p).encode() in data for p in [*paths, workdir]):
                hints.append(f"'{name}' contains an absolute path of the build directory")
            if any(p in data for p in _timestamp_patterns()) or _epoch_near_now(data):
                hints.append(f"'{name}' contains a timestamp (today's date or the current time)")
    return hints
