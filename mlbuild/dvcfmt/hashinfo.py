"""The identity DVC records for a file or directory: md5 (directories: '<md5>.dir'), size,
number of files and the executable bit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HashInfo:
    """The lock-file identity of a file or directory."""

    md5: str
    size: int
    nfiles: int | None = None  # set for directories
    isexec: bool = False

    @property
    def isdir(self) -> bool:
        """Directories hash to '<md5>.dir'."""
        return self.md5.endswith(".dir")

    def to_lock(self) -> dict[str, object]:
        """The fields dvc.lock records after 'path' and 'hash'."""
        entry: dict[str, object] = {"md5": self.md5, "size": self.size}
        if self.isexec:
            entry["isexec"] = True
        if self.nfiles is not None:
            entry["nfiles"] = self.nfiles
        return entry

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> HashInfo:
        """The identity recorded in a dvc.lock output or a .dvc file's `outs` entry."""
        nfiles = entry.get("nfiles")
        return cls(md5=str(entry.get("md5")), size=int(entry.get("size") or 0),
                   nfiles=None if nfiles is None else int(nfiles),
                   isexec=bool(entry.get("isexec")))
