"""Which environment variables imports look up: a process forked after them behaves as a new
interpreter would only under the same values of those (FORCE_COLOR for Typer, HOME for dulwich
and fsspec). Used by the resident server and by the test suite's zygote."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

# Modules that scan the whole environment when imported, and what they look for there:
# tqdm its TQDM_* settings, fsspec its FSSPEC_* ones; wsgiref copies it for CGI handlers,
# which nothing here uses. Another module's scan is recorded as "*": anything may matter.
# (fsspec's config also finds ~ with HOME, as dulwich's does: read either way.)
SCANS = {"tqdm/utils.py": "TQDM_", "fsspec/config.py": "FSSPEC_", "wsgiref/handlers.py": ""}
SCANNED = tuple(prefix for prefix in SCANS.values() if prefix)


def _scanner(depth: int, scans: Mapping[str, str]) -> str | None:
    """The file of the code looking the environment up: a known scan's, or None."""
    frame = sys._getframe(depth)
    while frame.f_back is not None and frame.f_code.co_filename.startswith("<frozen "):
        frame = frame.f_back  # os, posixpath, _collections_abc
    name = frame.f_code.co_filename
    return next((known for known in scans if name.endswith(known)), None)


@contextlib.contextmanager
def recording(read: set[str], scans: Mapping[str, str] = SCANS) -> Iterator[None]:
    """Note every environment variable looked up meanwhile ("*": the whole environment
    scanned by a module not in *scans*, file -> the prefix its scan looks for)."""
    cls: Any = type(os.environ)
    get, walk = cls.__getitem__, cls.__iter__

    def getitem(self: Any, key: str) -> str:
        if _scanner(2, scans) is None:
            read.add(key)
        return str(get(self, key))

    def iterate(self: Any) -> Iterator[str]:
        if _scanner(2, scans) is None:
            read.add("*")
        return iter(walk(self))

    cls.__getitem__, cls.__iter__ = getitem, iterate
    try:
        yield
    finally:
        cls.__getitem__, cls.__iter__ = get, walk


def differing(read: set[str], prefixes: tuple[str, ...], mine: dict[str, str],
              theirs: dict[str, str]) -> list[str]:
    """The variables read (or starting with one of *prefixes*) whose values differ."""
    keys = set(mine) | set(theirs)
    return sorted(k for k in keys if (k in read or k.startswith(prefixes))
                  and mine.get(k) != theirs.get(k))
