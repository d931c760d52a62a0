"""A second process that commits part of a big directory's files, so that a commit of
thousands of small files uses two cores.

Why a process: a small file's commit is a dozen system calls (open, read, create the object,
link it in), and two threads of one interpreter serialise on the GIL between every one of
them: measured in issue 17, two threads doubled the CPU time and lengthened the commit. Two
processes each commit their share at full speed (10,000 files: 0.55 s against 1.0-1.1 s on
one core, on this project's 2-core machine).

The helper is a new interpreter (never a fork of a threaded one) that imports from this
process's `sys.path`, so it runs the same mlbuild. It reads its share on stdin (the cache's
object folder, each file's path, and what the stat cache knows of it) and commits each file
exactly as this process would (`onepass.commit_small`: the object is written from the bytes
that were hashed, and a stat key is answered only when the file's stat did not move while it
was read). It answers, per file, the md5, size, stat key and executable bit, `None` for a
file too big for one read, or `False` when committing it failed. A failed file, a malformed
answer, and every file of a helper that could not start, died, ran past its time or answered
garbage, are committed again here, which raises the same error a one-process commit would
have raised. What the helper may already have stored is harmless: objects are written whole
under their own hash.

Commits by hard link (`cache.type hardlink`) stay in this process: the helper would make
links this process must recheck, and those of a helper that dies are not known here.
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
from mlbuild.store.onepass import ObjectWriter, Read, commit_small

SPLIT_MIN = 2_000  # files in a directory before a helper pays for its ~60 ms start-up
# a helper that takes longer than this is killed and its share committed here
TIMEOUT_S, TIMEOUT_PER_FILE_S = 60.0, 0.01
PARENT_CHECK = 256  # files between the helper's checks that mlbuild is still there
Answer = tuple[str, int, StatKey | None, bool] | None | bool  # see the module docstring
Known = dict[str, list[object]]  # full path -> the stat cache's [inode, mtime, ctime, size, md5]
_BOOT = ("import sys; sys.path[:] = sys.argv[1:]; "
         "from mlbuild.store.sidecommit import main; main()")


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worth_it(count: int, linking: bool) -> bool:
    """True when a helper should take part of *count* files: enough of them, a second core,
    objects written as copies (see the module docstring) and a Python to start."""
    return (count >= SPLIT_MIN and not linking and cores() >= 2 and bool(sys.executable)
            and not getattr(sys, "frozen", False))


def _valid(answer: object) -> bool:
    if answer is None or answer is False:
        return True
    if not isinstance(answer, tuple) or len(answer) != 4:
        return False
    md5, size, key, isexec = answer
    return (isinstance(md5, str) and len(md5) == 32 and isinstance(size, int)
            and isinstance(isexec, bool) and (key is None or (
                isinstance(key, tuple) and all(isinstance(part, int) for part in key))))


class Helper:
    """A running helper committing a share of the files; `answers()` waits for it. Use it
    as a context manager: leaving kills a helper that is still running."""

    def __init__(self, writer: ObjectWriter, paths: Sequence[str], known: Known) -> None:
        self.count = len(paths)
        self._answers: list[Answer] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        request = marshal.dumps((str(writer.files), os.getpid(), list(paths), known), 4)
        # -P: nothing put before the path given; "" (this process's working directory, which
        # is the helper's too) stays what it is here
        argv = [sys.executable, "-P", "-c", _BOOT, *sys.path]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
        except (OSError, ValueError):
            return
        # the request is sent and the answer read on a thread, while this process commits
        # its own share (a pipe holds 64 KiB: writing it here would wait for the helper)
        self._thread = threading.Thread(target=self._talk, args=(request,), daemon=True,
                                        name="mlbuild-sidecommit")
        self._thread.start()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _talk(self, request: bytes) -> None:
        assert self._proc is not None
        try:
            out, _ = self._proc.communicate(
                request, timeout=TIMEOUT_S + TIMEOUT_PER_FILE_S * self.count)
            got = marshal.loads(out) if self._proc.returncode == 0 else None
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            return
        except (OSError, ValueError, EOFError, TypeError):
            return
        if isinstance(got, list) and len(got) == self.count:
            self._answers = [answer if _valid(answer) else False for answer in got]

    def answers(self) -> list[Answer]:
        """The helper's answer per file; False for each when it failed (commit them here)."""
        if self._proc is not None:
            self._thread.join()
        return self._answers if self._answers is not None else [False] * self.count

    def stop(self) -> None:
        """Kill the helper if it is still running (this commit failed or was interrupted)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._thread.join()


def as_read(answer: Answer) -> Read | None:
    """A helper's (valid) answer for one file as a Read (None: a big file, to stream)."""
    if not isinstance(answer, tuple):
        return None
    md5, size, key, isexec = answer
    return Read(md5, size, key, isexec)


def _commit(files: str, parent: int, paths: list[str], known: Known) -> list[Answer]:
    writer = ObjectWriter(Path(files))
    answers: list[Answer] = []
    for i, path in enumerate(paths):
        if i % PARENT_CHECK == 0 and os.getppid() != parent:
            sys.exit(3)  # mlbuild is gone (killed): commit nothing more for it
        entry = known.get(path)

        def remembered(skey: StatKey, entry: list[object] | None = entry) -> str | None:
            return str(entry[-1]) if entry is not None and tuple(entry[:-1]) == skey else None

        try:
            read = commit_small(path, path, remembered, writer.has, writer)
        except Exception:  # the caller commits it again, and raises the error
            answers.append(False)
            continue
        answers.append(None if read is None else (read.md5, read.size, read.key, read.isexec))
    return answers


def main() -> None:
    """The helper: a request on stdin, the answers on stdout."""
    files, parent, paths, known = marshal.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(marshal.dumps(_commit(files, parent, paths, known), 4))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
