"""A second process that commits part of a big directory's files, so that a commit of
thousands of small files uses two cores.

Why a process: a small file's commit is a dozen system calls (open, read, create the object,
link it in), and two threads of one interpreter serialise on the GIL between every one of
them: measured in issue 17, two threads doubled the CPU time and lengthened the commit. Two
processes each commit their share at full speed (10,000 files: 0.55 s against 1.0-1.1 s on
one core, on this project's 2-core machine).

The helper is `python -m mlbuild.store.sidecommit` (a new interpreter, never a fork of a
threaded one). It reads its share on stdin (the cache's object folder, whether it links,
each file's path, and what the stat cache knows of it) and commits each file exactly as this
process would (`onepass.commit_small`: the object is written from the bytes that were hashed;
`linkcommit.commit_linked` under `cache.type hardlink`). It answers, per file, the md5, size,
stat key, executable bit and the link it made (for the final recheck of every link), `None`
for a file too big for one read, or `False` when committing it failed. Nothing it answers is
trusted beyond that: a failed file, or every file of a helper that could not start, died or
answered garbage, is committed again here, which raises the same error a one-process commit
would have raised.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from mlbuild.files.layout import StatKey
from mlbuild.store.linkcommit import Linked, commit_linked
from mlbuild.store.onepass import ObjectWriter, Read, commit_small

SPLIT_MIN = 2_000  # files in a directory before a helper pays for its ~60 ms start-up
# see the module docstring; the last item is a Linked's fields
Answer = tuple[str, int, StatKey | None, bool, tuple[int | str, ...] | None] | None | bool
Known = dict[str, list[object]]  # full path -> the stat cache's [inode, mtime, ctime, size, md5]


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worth_it(count: int) -> bool:
    """True when a helper should take part of *count* files: enough of them, and a second
    core."""
    return count >= SPLIT_MIN and cores() >= 2


class Helper:
    """A running helper committing a share of the files; `answers()` waits for it."""

    def __init__(self, writer: ObjectWriter, paths: Sequence[str], known: Known) -> None:
        self.count = len(paths)
        self._answers: list[Answer] | None = None
        request = marshal.dumps((str(writer.files), writer.link, list(paths), known), 4)
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "mlbuild.store.sidecommit"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            self._proc = None
            return
        # the request is sent and the answer read on a thread, while this process commits
        # its own share (a pipe holds 64 KiB: writing it here would wait for the helper)
        self._thread = threading.Thread(target=self._talk, args=(request,), daemon=True,
                                        name="mlbuild-sidecommit")
        self._thread.start()

    def _talk(self, request: bytes) -> None:
        assert self._proc is not None
        try:
            out, _ = self._proc.communicate(request)
            got = marshal.loads(out) if self._proc.returncode == 0 else None
        except (OSError, ValueError, EOFError, TypeError):
            got = None
        if isinstance(got, list) and len(got) == self.count:
            self._answers = got

    def answers(self) -> list[Answer]:
        """The helper's answer per file; False for each when it failed (commit them here)."""
        if self._proc is not None:
            self._thread.join()
        return self._answers if self._answers is not None else [False] * self.count

    def stop(self) -> None:
        """Kill the helper (this commit failed or was interrupted before asking it)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._thread.join()


def as_read(answer: Answer, linked: list[Linked] | None) -> Read | None:
    """A helper's answer for one file as a Read (None: a big file, to be streamed); the link
    it made, if any, is added to *linked*."""
    if not isinstance(answer, tuple):
        return None
    md5, size, key, isexec, link = answer
    if link is not None and linked is not None:
        obj, ino, mtime_ns, link_size, mode = link
        linked.append(Linked(str(obj), int(ino), int(mtime_ns), int(link_size), int(mode)))
    return Read(md5, size, None if key is None else tuple(key), isexec)


def _commit(files: str, link: bool, paths: list[str], known: Known) -> list[Answer]:
    writer = ObjectWriter(Path(files), link=link)
    answers: list[Answer] = []
    linked: list[Linked] = []
    for path in paths:
        entry = known.get(path)

        def remembered(skey: StatKey, entry: list[object] | None = entry) -> str | None:
            return str(entry[-1]) if entry is not None and tuple(entry[:-1]) == skey else None

        links = len(linked)
        try:
            if writer.link:
                read = commit_linked(path, path, remembered, writer.has, writer, linked)
            else:
                read = commit_small(path, path, remembered, writer.has, writer)
        except Exception:  # the caller commits it again, and raises the error
            answers.append(False)
            continue
        made = linked[-1] if len(linked) > links else None
        answers.append(None if read is None else (
            read.md5, read.size, read.key, read.isexec,
            None if made is None else (made.obj, made.ino, made.mtime_ns, made.size, made.mode)))
    return answers


def main() -> None:
    """The helper: a request on stdin, the answers on stdout."""
    files, link, paths, known = marshal.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(marshal.dumps(_commit(files, link, paths, known), 4))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
