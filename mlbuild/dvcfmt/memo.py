"""Parsed YAML files memoised as JSON, keyed on the file's stat identity.

PyYAML builds Python objects slowly; a 100-stage dvc.lock takes ~15 ms to load, which is
most of a no-op build's own work. JSON loads ten times faster, so the parsed form of
dvc.yaml, dvc.lock and params files is kept under .dvc/tmp/mlbuild/parsed/ until the file
changes (new inode, mtime, ctime or size).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import load_yaml, write_memo
from mlbuild.errors import ConfigError
from mlbuild.files.layout import stat_key
from mlbuild.files.names import derived

MEMO_VERSION = 2  # 2: dvc.yaml memos are written only after DVC's schema accepted the file


def _memo_path(memo_dir: Path, where: str) -> Path:
    return memo_dir / derived(where.replace("/", "__"), suffix=".json")


def load_yaml_memo(path: Path, where: str, memo_dir: Path,
                   check: Callable[[Any], None] | None = None) -> Any:
    """load_yaml(), answered from the JSON memo when the file is unchanged.

    *check* validates a freshly parsed file before it is memoised: it runs once per change
    of the file, never on the no-op path.
    """
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: file not found") from exc
    # ctime too: see state.py
    key = [*stat_key(st), MEMO_VERSION]
    memo = _memo_path(memo_dir, where)
    try:
        doc = json.loads(memo.read_text(encoding="utf-8"))
        if doc.get("key") == key:
            return doc["data"]
    except (OSError, ValueError):
        pass
    data = load_yaml(path, where)
    if check is not None:
        check(data)
    try:
        text = json.dumps({"key": key, "data": data}, separators=(",", ":"))
    except (TypeError, ValueError):
        return data  # not representable as JSON (e.g. dates): parse each time
    if json.loads(text)["data"] == data:  # non-string keys would not survive: skip those
        write_memo(memo, text)
    return data


def remember_yaml(path: Path, where: str, memo_dir: Path, data: Any, text: str) -> None:
    """Record *data* as the parsed form of *path*, which this process has just written as
    *text* (dump_yaml of *data*): the next read is then a JSON load, not a PyYAML parse.

    The file is read back after its stat: a concurrent edit either shows in the bytes or
    changes the stat identity the memo is keyed on.
    """
    try:
        st = path.stat()
        if path.read_bytes() != text.encode("utf-8"):
            return
        out = json.dumps({"key": [*stat_key(st), MEMO_VERSION], "data": data},
                         separators=(",", ":"))
    except (OSError, TypeError, ValueError):
        return
    if json.loads(out)["data"] == data:
        write_memo(_memo_path(memo_dir, where), out)
