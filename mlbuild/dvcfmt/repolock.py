"""DVC's repository lock (.dvc/tmp/lock), taken exactly as DVC takes it, so DVC and mlbuild
exclude each other; and DVC's per-path rwlock, which shows a DVC command in mid-stage.

DVC locks with zc.lockfile: flock(LOCK_EX | LOCK_NB) on .dvc/tmp/lock, then " <pid>\\n" written
into it. The same two system calls here are the same lock, without importing DVC on a no-op
build. Only `core.hardlink_lock` (a different lock) goes through DVC's own class.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from mlbuild.errors import BusyError
from mlbuild.files.temp import alive

POLL = 0.2  # seconds between looks at a DVC command's rwlock while waiting for it
_HELD: dict[Path, int] = {}  # root -> the lock's descriptor, while this process holds it


def held(root: Path) -> int | None:
    """The lock's file descriptor when this process holds the project's lock (DVC's own Repo
    objects opened meanwhile must not lock it a second time), else None."""
    return _HELD.get(root)


def describe(pid: int) -> tuple[str, str]:
    """(tool, command line) of a process: ('dvc', 'dvc repro'), ('mlbuild', 'mlbuild run')."""
    try:
        argv = [a.decode(errors="replace")
                for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "", ""
    if len(argv) == 1:  # a process title (a command the resident server forked)
        argv = argv[0].split()
    for idx, arg in enumerate(argv):
        parts = arg.split("/")
        name = parts[-2] if parts[-1] == "__main__.py" and len(parts) > 1 else parts[-1]
        if name in ("dvc", "mlbuild"):
            return name, " ".join([name, *argv[idx + 1:]])[:100]
    return "", " ".join(argv)[:100]


def holder_message(pid: int | None) -> str:
    """Who holds the lock, in words."""
    if pid is None:
        return "another process holds this project's lock (.dvc/tmp/lock)"
    tool, cmdline = describe(pid)
    if tool == "mlbuild":
        sub = cmdline.split()[1] if len(cmdline.split()) > 1 else "command"
        return f"another mlbuild {sub} is in progress in this project (pid {pid}: {cmdline})"
    if tool == "dvc":
        return f"a DVC command holds this project's lock (pid {pid}: {cmdline})"
    if cmdline:
        return f"another process holds this project's DVC lock (pid {pid}: {cmdline})"
    return f"a process holds this project's DVC lock (pid {pid})"


def _open(path: Path) -> IO[str]:
    try:
        return open(path, "r+")  # as zc.lockfile: never truncate what the holder wrote
    except FileNotFoundError:
        return open(path, "a+")


def _holder(fobj: IO[str]) -> int | None:
    fobj.seek(0)
    word = (fobj.read(64).split() or [""])[0]
    return int(word) if word.isdigit() else None


def rwlock_busy(tmp: Path) -> tuple[int, str] | None:
    """A live process (not this one) that DVC's rwlock names: DVC runs a stage's command with
    the repository lock released but the stage's paths held there."""
    path = tmp / "rwlock"
    if not path.exists():
        return None
    with _open(tmp / "rwlock.lock") as guard:
        try:
            fcntl.flock(guard.fileno(), fcntl.LOCK_EX)  # DVC rewrites rwlock under this lock
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return None
        finally:
            fcntl.flock(guard.fileno(), fcntl.LOCK_UN)
    infos: list[Any] = list((data.get("write") or {}).values())
    for readers in (data.get("read") or {}).values():
        infos += readers if isinstance(readers, list) else []
    for info in infos:
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and pid != os.getpid() and alive(pid):
            return pid, str(info.get("cmd", ""))
    return None


def _try(fobj: IO[str], block: bool) -> bool:
    flags = fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB
    try:
        fcntl.flock(fobj.fileno(), flags)
    except BlockingIOError:
        return False
    return True


def _acquire(path: Path, wait: bool, on_wait: Callable[[str], None] | None) -> IO[str]:
    """Take the lock, waiting (or failing) while DVC or another mlbuild holds it or while a
    DVC command is in the middle of a stage."""
    told = False
    while True:
        fobj = _open(path)
        if not _try(fobj, block=False):
            message = holder_message(_holder(fobj))
            if not wait:
                fobj.close()
                raise BusyError(f"{message}; wait for it to finish or run again without "
                                "--no-wait")
            if on_wait is not None and not told:
                on_wait(f"waiting for it to finish: {message}...")
                told = True
            _try(fobj, block=True)
        busy = rwlock_busy(path.parent)
        if busy is None:
            return fobj
        fcntl.flock(fobj.fileno(), fcntl.LOCK_UN)
        fobj.close()
        cmdline = describe(busy[0])[1] or busy[1]
        message = f"a DVC command is running a stage in this project (pid {busy[0]}: {cmdline})"
        if not wait:
            raise BusyError(f"{message}; wait for it to finish or run again without --no-wait")
        if on_wait is not None and not told:
            on_wait(f"waiting for it to finish: {message}...")
            told = True
        time.sleep(POLL)


@contextmanager
def repo_lock(root: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None,
              announce: bool = True) -> Iterator[int | None]:
    """Hold DVC's repository lock; yields its file descriptor (None for a hardlink lock).
    Without *announce* (a reader such as verify) the lock file's content is left alone."""
    tmp = root / ".dvc" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if root in _HELD:  # re-entrant within this process, as DVC's lock_repo
        yield _HELD[root] if _HELD[root] >= 0 else None
        return
    if _hardlink_configured(root):
        with _hardlink_lock(root, tmp, wait):
            _HELD[root] = -1
            try:
                yield None
            finally:
                _HELD.pop(root, None)
        return
    fobj = _acquire(tmp / "lock", wait, on_wait)
    try:
        if announce:
            _announce(fobj)
        _HELD[root] = fobj.fileno()
        yield fobj.fileno()
    finally:
        _HELD.pop(root, None)
        with suppress(OSError):
            fcntl.flock(fobj.fileno(), fcntl.LOCK_UN)
        fobj.close()


def _announce(fobj: IO[str]) -> None:
    """Write ' <pid>' into the lock file, as zc.lockfile does; only informative, so a full
    disk does not stop the command here."""
    with suppress(OSError):
        fobj.seek(0)
        fobj.write(f" {os.getpid()}\n")
        fobj.truncate()
        fobj.flush()


def _config_files(root: Path) -> list[Path]:
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    system = Path((os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")[0])
    return [root / ".dvc" / "config", root / ".dvc" / "config.local",
            Path(os.environ.get("DVC_GLOBAL_CONFIG_DIR") or home / "dvc") / "config",
            Path(os.environ.get("DVC_SYSTEM_CONFIG_DIR") or system / "dvc") / "config"]


def _hardlink_configured(root: Path) -> bool:
    """core.hardlink_lock at any config level (read by DVC itself when it is mentioned)."""
    for path in _config_files(root):
        with suppress(OSError):
            if "hardlink_lock" in path.read_text(encoding="utf-8", errors="replace"):
                from dvc.config import Config

                return bool(Config(dvc_dir=str(root / ".dvc"))["core"].get("hardlink_lock"))
    return False


@contextmanager
def _hardlink_lock(root: Path, tmp: Path, wait: bool) -> Iterator[None]:
    from dvc.lock import LockError, make_lock

    lock = make_lock(str(tmp / "lock"), tmp_dir=str(tmp), hardlink_lock=True, wait=wait)
    try:
        lock.lock()
    except LockError as exc:
        raise BusyError("another process holds this project's DVC lock (.dvc/tmp/lock, "
                        "core.hardlink_lock); wait for it to finish or run again without "
                        "--no-wait") from exc
    try:
        yield
    finally:
        lock.unlock()
