"""A memo of directories found complete in the cache, so that a no-op status does not look
at 10,000 objects again to learn that a 10,000-file output is still all there.

A directory's objects live in at most 256 prefix folders (files/md5/ab/...). Removing or
renaming an object changes its folder's modification time, so a directory found complete
stays complete while every folder its objects live in keeps the (inode, mtime) it had when
they were checked. Those stamps are taken before the check, and a stamp is only trusted
once its folder has been quiet for longer than the filesystem's timestamp granularity.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

FINE_MARGIN = 0.05  # seconds: ext4, xfs, btrfs stamp with a clock of a few milliseconds
COARSE_MARGIN = 2.5  # seconds: filesystems with whole-second (or 2-second) timestamps
KEPT = 512  # directories remembered (the oldest are forgotten first)

Stamp = list[int]  # [inode, mtime_ns] of one prefix folder


class CompleteMemo:
    """Directory objects (by .dir md5) known complete, with the stamps that prove it."""

    def __init__(self, path: Path, files: Path, writable: bool = True) -> None:
        self.path = path
        self.files = str(files)
        self.writable = writable
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Stamp]] | None = None

    def _load(self) -> dict[str, dict[str, Stamp]]:
        if self._data is None:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = raw if isinstance(raw, dict) else {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def _key(self, md5: str) -> str:
        return f"{self.files}:{md5}"

    def stamps(self, prefixes: set[str]) -> dict[str, Stamp] | None:
        """The current stamps of these prefix folders (None when one is missing)."""
        found: dict[str, Stamp] = {}
        for prefix in prefixes:
            try:
                st = os.stat(os.path.join(self.files, prefix))  # noqa: PTH116, PTH118
            except OSError:
                return None
            found[prefix] = [st.st_ino, st.st_mtime_ns]
        return found

    def known(self, md5: str) -> bool:
        """True when *md5* was found complete and none of its folders changed since."""
        with self._lock:
            entry = self._load().get(self._key(md5))
        if not isinstance(entry, dict):
            return False
        return self.stamps(set(entry)) == entry

    def learn(self, md5: str, stamps: dict[str, Stamp], taken: float) -> None:
        """Remember that *md5* was complete when *stamps* were taken (at time *taken*),
        unless a folder changed so recently that a later change could keep its stamp."""
        if not self.writable:
            return
        coarse = any(mtime % 1_000_000_000 == 0 for _, mtime in stamps.values())
        settled = (taken - (COARSE_MARGIN if coarse else FINE_MARGIN)) * 1e9
        if any(mtime > settled for _, mtime in stamps.values()):
            return
        from mlbuild.dvcfmt.yamlio import write_memo

        with self._lock:
            data = self._load()
            data.pop(self._key(md5), None)
            data[self._key(md5)] = stamps  # last: the newest
            for old in list(data)[:-KEPT]:
                del data[old]
            text = json.dumps(data, separators=(",", ":"))
        write_memo(self.path, text)


def now() -> float:
    """The wall clock, as the filesystem stamps modification times."""
    return time.time()
