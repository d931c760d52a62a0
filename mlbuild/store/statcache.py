"""The stat cache: (inode, mtime, ctime, size) -> md5, so unchanged files are never rehashed."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from mlbuild.dvcfmt.yamlio import write_atomic
from mlbuild.files.layout import StatKey


class StatCache:
    """A JSON-backed map from path to the md5 of the content last seen at that stat."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self._dirty = False
        self._table: dict[str, list[object]] | None = None  # read when first needed

    @property
    def _data(self) -> dict[str, list[object]]:
        """The entries, read on first use: a status answered from directory memos never
        needs them (the file holds an entry per file ever hashed, megabytes of JSON)."""
        if self._table is None:
            with self._loading:  # commit threads may ask at once: one load, one table
                if self._table is None:
                    try:
                        loaded = json.loads(self.path.read_text())
                    except (OSError, ValueError):
                        loaded = {}
                    self._table = loaded if isinstance(loaded, dict) else {}
        return self._table

    def get(self, relpath: str, key: StatKey) -> str | None:
        """The cached md5 if the file still has the same stat identity."""
        entry = self._data.get(relpath)
        if entry is not None and tuple(entry[:-1]) == key:
            return str(entry[-1])
        return None

    def table(self) -> dict[str, list[object]]:
        """The entries themselves, path -> [inode, mtime, ctime, size, md5], for a loop that
        matches many files inline (read only: put() writes)."""
        return self._data

    def get_stat(self, relpath: str, st: os.stat_result) -> str | None:
        """get() for a stat result, without building its key (a loop over 100,000 files)."""
        entry = self._data.get(relpath)
        if (entry is not None and entry[0] == st.st_ino and entry[1] == st.st_mtime_ns
                and entry[2] == st.st_ctime_ns and entry[3] == st.st_size and len(entry) == 5):
            return str(entry[4])
        return None

    def put(self, relpath: str, key: StatKey, md5: str) -> None:
        """Remember the md5 for this stat identity."""
        with self._lock:
            self._data[relpath] = [*key, md5]
            self._dirty = True

    def save(self) -> None:
        """Persist if anything changed (atomic write)."""
        with self._lock:
            if not self._dirty:
                return
            text = json.dumps(self._data, separators=(",", ":"))
            self._dirty = False
        write_atomic(self.path, text, "the stat cache (hashes of unchanged files)")
