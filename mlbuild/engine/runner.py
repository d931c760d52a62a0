"""Running one stage's command as a subprocess, with its outputs backed up until it succeeds."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from mlbuild.engine.procgroup import Process, ProcessTable, popen_group
from mlbuild.engine.warm import WarmPool, program
from mlbuild.errors import StageFailedError
from mlbuild.files.names import derived
from mlbuild.pipeline.model import Stage
from mlbuild.store.boundary import ensure_inside
from mlbuild.store.cache import remove

TAIL_LINES = 3  # of the command's stderr, quoted in the one-line failure message
TAIL_CHARS = 300


def stage_env(root: Path, stage: Stage) -> dict[str, str]:
    """The environment DVC gives a stage, with this interpreter's scripts first on PATH."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + path if path else bindir
    env.setdefault("DVC_ROOT", str(root))
    env["DVC_ROOT"] = str(root)
    env["DVC_STAGE"] = stage.name
    return env


def log_name(stage: str, suffix: str) -> str:
    """The file name of a stage's log (a foreach member's name may hold '/')."""
    return derived(stage.replace("/", "_"), suffix=suffix)


def shell_command(shell: str, cmd: str) -> list[str]:
    """The argv DVC runs a command with (dvc/stage/run.py _make_cmd): the user's shell, told
    not to read its start-up files, which could change the environment or the command."""
    name = Path(shell).name.lower()
    options = {"bash": ["--noprofile", "--norc"], "zsh": ["--no-rcs"]}.get(name, [])
    return [shell, *options, "-c", cmd]


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last non-blank lines of a log file, joined with ' | ' into one line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept)
    return joined if len(joined) <= TAIL_CHARS else "..." + joined[-TAIL_CHARS:]


def _full_disk(root: Path, stage: Stage) -> str:
    """'; the filesystem mounted at ... is full' when the stage's filesystem has no space left:
    the likely reason it failed, which its log (on the same full disk) cannot tell."""
    from mlbuild.files.diskspace import describe, mount_point, nearly_full

    seen = set()
    for path in [root, *((root / o.path).parent for o in stage.outs)]:
        mount = mount_point(path)
        if mount not in seen and nearly_full(mount):
            return (f"; no space left on device: {describe(mount)}, so the command could not "
                    "write (and its log may be empty); free some space and run again")
        seen.add(mount)
    return ""


def _exit_reason(code: int) -> str:
    if code < 0:
        with suppress(ValueError):
            return f"command was killed by {signal.Signals(-code).name}"
    return f"command exited with code {code}"


MANIFEST = "moved.json"  # in a backup box: where each output went, for a run after a crash


def _move_aside(path: Path, aside: Path, beside: Path) -> Path:
    """Move an output into the backup box; beside itself when the box is on another
    filesystem (an output under a symlink to another disk)."""
    aside.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, aside)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        os.replace(path, beside)
        return beside
    return aside


def _plan_backups(root: Path, stage: Stage, box: Path,
                  recorded: Mapping[str, str]) -> list[tuple[Path, Path, Path]]:
    """(output, box path, same-directory path) of every output to move aside, written down in
    the box first: a run after mlbuild was killed puts them back from there. The box also
    notes what dvc.lock recorded for each (*recorded*: md5 by def_path), so that run can tell
    a later build's output (`dvc repro` after the crash) from the killed stage's."""
    plan, notes = [], []
    for idx, out in enumerate(stage.outs):
        path = root / out.path
        if out.persist or not (path.exists() or path.is_symlink()):
            continue
        ensure_inside(root, path)  # never move a file that a link leads out of the project
        beside = path.parent / derived(path.name, ".",
                                       f".{os.getpid()}-{uuid.uuid4().hex[:12]}.mlbuild-backup")
        plan.append((path, box / str(idx), beside))
        notes.append({"path": os.path.relpath(path, root), "aside": [str(box / str(idx)),
                      str(beside)], "stage": stage.name, "def_path": out.def_path,
                      "lock": recorded.get(out.def_path)})
    if plan:
        box.mkdir(parents=True, exist_ok=True)
        (box / MANIFEST).write_text(json.dumps(notes))
    return plan


def _put_back(moved: list[tuple[Path, Path]]) -> list[Path]:
    """Restore every moved output; return the backups that could not be put back."""
    stranded = []
    for path, aside in moved:
        try:
            remove(path)
            path.parent.mkdir(parents=True, exist_ok=True)  # the command may have removed it
            os.replace(aside, path)
        except OSError:
            stranded.append(aside)
    return stranded


@contextmanager
def backed_up_outputs(root: Path, stage: Stage, scratch: Path,
                      recorded: Mapping[str, str] | None = None) -> Iterator[None]:
    """Move existing non-persistent outputs aside; put them back if the body fails.
    *recorded*: the md5 dvc.lock holds for each output (by def_path), noted in the backup.

    A backup that cannot be put back is kept (and named in the error), never deleted.
    """
    moved: list[tuple[Path, Path]] = []
    box = scratch / derived(stage.name.replace("/", "_"),
                            suffix=f"-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    stranded: list[Path] = []
    # planned before anything moves: a failure here loses nothing
    plan = _plan_backups(root, stage, box, recorded or {})
    try:
        for path, aside, beside in plan:
            moved.append((path, _move_aside(path, aside, beside)))
        yield
    except BaseException:
        stranded = _put_back(moved)
        kept = {p for p, _, _ in plan}  # moved and put back, or never moved at all
        for out in stage.outs:
            if not out.persist and root / out.path not in kept:
                remove(root / out.path)  # a half-written output nobody had before
        if stranded:
            raise StageFailedError(
                f"stage '{stage.name}' failed and its previous output(s) could not be put "
                f"back; they are kept at {', '.join(str(a) for a in stranded)}"
            ) from None
        raise
    finally:
        for _, aside in moved:
            if aside not in stranded and aside.parent != box:
                remove(aside)  # a same-directory backup of a successful run
        if not stranded:
            shutil.rmtree(box, ignore_errors=True)


def _start(root: Path, stage: Stage, cmd: str, env: dict[str, str], procs: ProcessTable,
           out: IO[bytes], err: IO[bytes], warm: WarmPool | None) -> Process:
    """Start one command: forked from a warm interpreter when it can be, else by the shell."""
    cwd = root / stage.wdir
    if warm is not None and (argv := program(cmd)) is not None:
        proc = warm.start(argv, cwd, env, out, err, procs.group())
        if proc is not None:
            return proc
    shell = os.environ.get("SHELL") or "/bin/sh"
    try:
        started: Process = subprocess.Popen(
            shell_command(shell, cmd), cwd=cwd, env=env, stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, **popen_group(procs),  # type: ignore[call-overload]
        )
    except OSError as exc:
        raise StageFailedError(
            f"stage '{stage.name}' could not start its command in "
            f"'{stage.wdir}' with {shell}: {exc.strerror or exc}"
        ) from exc
    return started


def run_command(root: Path, stage: Stage, logdir: Path, procs: ProcessTable,
                env: dict[str, str] | None = None, warm: WarmPool | None = None) -> None:
    """Run the stage's commands in its wdir; raise StageFailedError on a non-zero exit.
    With *warm*, a plain Python command is forked from a warm interpreter."""
    logdir.mkdir(parents=True, exist_ok=True)
    out_log, err_log = logdir / log_name(stage.name, ".out"), logdir / log_name(stage.name, ".err")
    env = env if env is not None else stage_env(root, stage)
    with open(out_log, "wb") as out, open(err_log, "wb") as err:
        for cmd in stage.cmd:
            proc = _start(root, stage, cmd, env, procs, out, err, warm)
            procs.add(proc)
            try:
                code = proc.wait()
            finally:
                procs.discard(proc)
            if procs.interrupted:  # children that outlived the shell
                procs.kill_group(proc, signal.SIGKILL)
                raise StageFailedError(f"stage '{stage.name}': interrupted")
            if code != 0:
                text = tail(err_log) or tail(out_log)
                raise StageFailedError(
                    f"stage '{stage.name}' failed: {_exit_reason(code)}"
                    + (f": {text}" if text else "") + f" (full log: {err_log.relative_to(root)})"
                    + _full_disk(root, stage)
                )
