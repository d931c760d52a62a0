"""Scratch projects: fresh git + DVC repositories, template copies and cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.measure import BenchError, Runner

REPO = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the two CLIs under test (from the interpreter's bin directory)."""

    mlbuild: str
    dvc: str

    @classmethod
    def find(cls) -> Tools:
        """Locate mlbuild and dvc next to this Python, else on PATH."""
        found = {}
        for name in ("mlbuild", "dvc"):
            local = Path(sys.executable).parent / name
            path = str(local) if local.is_file() else shutil.which(name)
            if not path:
                raise BenchError(f"'{name}' not found next to {sys.executable} nor on PATH")
            found[name] = path
        return cls(mlbuild=found["mlbuild"], dvc=found["dvc"])


def snapshot_mlbuild(tools: Tools, scratch: Path) -> tuple[Tools, Path, str]:
    """Freeze the mlbuild sources as they are now, so that concurrent edits of the working
    tree cannot change (or break) the code under test in the middle of a run.

    Copies the package into *scratch*/snapshot, byte-compiles it, and writes an `mlbuild`
    script equal to the console script. PYTHONPATH (see bench_env) puts the snapshot ahead
    of the editable install. Returns the tools, the snapshot dir and a digest of the sources.
    """
    import compileall
    import hashlib

    src = REPO / "mlbuild"
    snap = scratch / "snapshot"
    shutil.copytree(src, snap / "mlbuild", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compileall.compile_dir(snap / "mlbuild", quiet=1)
    digest = hashlib.md5(usedforsecurity=False)
    for path in sorted((snap / "mlbuild").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(snap).as_posix().encode() + b"\0" + path.read_bytes())
    script = scratch / "bin" / "mlbuild"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom mlbuild.launch.client import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n", encoding="utf-8")
    script.chmod(0o755)
    return Tools(mlbuild=str(script), dvc=tools.dvc), snap, digest.hexdigest()[:12]


def bench_env(scratch: Path, snapshot: Path | None = None) -> dict[str, str]:
    """The environment of every timed command.

    The interpreter's bin directory goes first on PATH (so `python` in a stage is the venv's
    under both tools), DVC's analytics are off, and DVC's site cache (its hash state and
    index) lives in the scratch directory so that it is removed with it. With a *snapshot*,
    PYTHONPATH makes every Python process (mlbuild, and stage code importing mlbuild) use it.
    """
    env = dict(os.environ)
    if snapshot is not None:
        env["PYTHONPATH"] = str(snapshot)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(scratch / "dvc-site-cache")
    # mlbuild's resident server (MLBUILD_SERVER=0: none) keeps its socket in the scratch
    # directory and is stopped at the end (stop_servers)
    env["XDG_RUNTIME_DIR"] = str(scratch / "run")
    (scratch / "run").mkdir(mode=0o700, exist_ok=True)
    env.update(GIT_IDENTITY)
    for var in ("DVC_STAGE", "DVC_ROOT"):
        env.pop(var, None)
    return env


def stop_servers(scratch: Path) -> None:
    """Stop the mlbuild servers the run started."""
    for pidfile in (scratch / "run" / "mlbuild").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def init_repo(runner: Runner, tools: Tools, path: Path, files: Mapping[str, str]) -> None:
    """`git init` + `dvc init` in *path*, write *files*, and commit everything."""
    path.mkdir(parents=True, exist_ok=True)
    runner.run(["git", "init", "-q"], path)
    runner.run([tools.dvc, "init", "-q"], path)
    quiet_dvc(runner, tools, path)
    for rel, text in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    commit_all(runner, path, "bench: generated project")


def quiet_dvc(runner: Runner, tools: Tools, path: Path) -> None:
    """Turn off DVC's analytics and update check in this repository's config."""
    runner.run([tools.dvc, "config", "core.analytics", "false"], path)
    runner.run([tools.dvc, "config", "core.check_update", "false"], path)


def commit_all(runner: Runner, path: Path, message: str) -> None:
    """`git add -A && git commit` (no-op when nothing changed)."""
    runner.run(["git", "add", "-A"], path)
    runner.run(["git", "commit", "-q", "--allow-empty", "-m", message], path)


def fresh_copy(template: Path, dest: Path) -> Path:
    """A full copy of *template* (git repo, .dvc, data) at *dest*, replacing what was there."""
    remove_tree(dest)
    shutil.copytree(template, dest, symlinks=True)
    return dest


def _make_writable(_func: object, name: str, _exc: object) -> None:
    """rmtree error handler: make the parent writable and retry once."""
    path = Path(name)
    parent = path.parent
    parent.chmod(parent.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=_make_writable)
    else:
        path.unlink()


# Trees removed while workloads run wait here, and are deleted when the run ends. On an ext4
# without a journal (this project's benchmark machine: /sys/fs/ext4/vda/journal_task says
# <none>) the kernel does not reuse an inode deleted in the last 30 s (5 min while its inode
# table block is dirty), and it finds that out by reading each candidate's inode: creating a
# file right after 20,000 were deleted cost 200-600 us instead of 20-30 us (`perf`: 74 % of a
# 10,000-file stage's time in `recently_deleted` / `find_inode_bit`). Deleting the last
# repetition's project just before the next timed command charged that to whichever tool
# came next, and W4's commit measured the benchmark's own deletions.
_TRASH: list[Path] = []
_TRASHED = iter(range(1_000_000_000))
TRASH_FREE = 0.10  # a tree is deleted at once when less than this share of the disk is free


def defer_removals(trash: Path | None) -> None:
    """Move removed trees into *trash* from now on, instead of deleting them (None: delete
    them again)."""
    if trash is not None:
        trash.mkdir(exist_ok=True)
    _TRASH[:] = [] if trash is None else [trash]


def _into_trash(path: Path) -> bool:
    """Move a tree into the trash; False when there is none, or too little disk is free."""
    if not _TRASH or not path.is_dir() or path.is_symlink():
        return False
    usage = shutil.disk_usage(path)
    if usage.free < TRASH_FREE * usage.total:
        return False
    try:
        path.rename(_TRASH[0] / str(next(_TRASHED)))
    except OSError:
        return False
    return True


def remove_tree(path: Path) -> None:
    """Delete a directory tree, including read-only cache objects (while workloads run, it
    goes to the trash: see defer_removals)."""
    if _into_trash(path):
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=_make_writable)
