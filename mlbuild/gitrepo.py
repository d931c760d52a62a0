"""The one module that talks to git: every git command mlbuild runs goes through git(); the
current revision is read from .git directly (no subprocess, for the fast path)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mlbuild.files.layout import DVC_FILE, ENV_FILE, LOCK_FILE, PARAMS_FILE


class GitError(Exception):
    """git is not installed, *root* is not in a work tree, or the command failed."""


def git(root: Path, *args: str, stdout: IO[bytes] | None = None,
        env: dict[str, str] | None = None, feed: bytes | None = None) -> bytes:
    """Run `git -C root ARGS` and return its output (or write it into *stdout*); *env* adds
    variables (GIT_INDEX_FILE, ...), *feed* is its standard input."""
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], input=feed,
                              stdout=subprocess.PIPE if stdout is None else stdout,
                              stderr=subprocess.PIPE, check=True,
                              env={**os.environ, **env} if env else None)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GitError(f"git {' '.join(args)} failed in {root}") from exc
    return proc.stdout or b""


def git_later(root: Path, *args: str) -> Callable[[], bytes]:
    """Start `git -C root ARGS` now; the returned function waits for it and returns its
    output (GitError as git() raises it), so git runs while the caller does other work."""
    try:
        proc = subprocess.Popen(["git", "-C", str(root), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        error = GitError(f"git {' '.join(args)} failed in {root}")
        error.__cause__ = exc

        def failed() -> bytes:
            raise error
        return failed

    def result() -> bytes:
        out, _ = proc.communicate()
        if proc.returncode:
            raise GitError(f"git {' '.join(args)} failed in {root}")
        return out or b""
    return result


def git_dir(root: Path) -> Path | None:
    """The git directory of the repository holding *root* (worktrees' `.git` files followed)."""
    for folder in (root, *root.parents):
        dotgit = folder / ".git"
        if dotgit.is_dir():
            return dotgit
        if dotgit.is_file():
            text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                path = Path(text.split(":", 1)[1].strip())
                return path if path.is_absolute() else (folder / path).resolve()
    return None


def _common_dir(gitdir: Path) -> Path:
    """Where refs live: a linked worktree keeps its HEAD but shares the main refs."""
    common = gitdir / "commondir"
    if common.is_file():
        return (gitdir / common.read_text(encoding="utf-8").strip()).resolve()
    return gitdir


def _resolve_ref(common: Path, ref: str) -> str | None:
    loose = common / ref
    if loose.is_file():
        return loose.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    return None


def head_revision(root: Path) -> str | None:
    """The commit HEAD points at, or None outside git or before the first commit."""
    gitdir = git_dir(root)
    if gitdir is None:
        return None
    try:
        head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref:"):
            return _resolve_ref(_common_dir(gitdir), head[4:].strip())
    except OSError:
        return None
    return head or None


def head_branch(root: Path) -> str | None:
    """The branch HEAD is on (None when detached or outside git), read from .git directly."""
    gitdir = git_dir(root)
    try:
        head = (gitdir / "HEAD").read_text(encoding="utf-8").strip() if gitdir else ""
    except OSError:
        return None
    return head.removeprefix("ref:").strip().removeprefix("refs/heads/") \
        if head.startswith("ref: refs/heads/") else None


# What a build writes itself: a build of a clean checkout leaves these changed, and that
# does not make the sources it was built from uncommitted.
BUILD_WRITTEN = (LOCK_FILE, DVC_FILE, PARAMS_FILE, ENV_FILE,
                 ".gitignore")


# --no-optional-locks: the check may run beside stages, and must not take git's index lock
# from a stage (or a person) running git meanwhile
_DIRTY = ("--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--", ".",
          *(f":(exclude,glob)**/{name}" for name in BUILD_WRITTEN))


def is_dirty(root: Path) -> bool | None:
    """True when tracked sources have uncommitted changes (files the build itself writes
    left out); None when git cannot tell."""
    return dirty_later(root)()


def dirty_later(root: Path) -> Callable[[], bool | None]:
    """is_dirty(), started now; the returned function waits for the answer."""
    result = git_later(root, *_DIRTY)

    def answer() -> bool | None:
        try:
            return bool(result().strip())
        except GitError:
            return None
    return answer


def read_objects(root: Path, specs: list[str]) -> dict[str, bytes | None]:
    """Each git object named (`<commit>:<path>` or a blob id) -> its bytes (None when absent),
    in one `git cat-file --batch`."""
    out = git(root, "cat-file", "--batch", feed="".join(f"{s}\n" for s in specs).encode())
    blobs: dict[str, bytes | None] = {}
    pos = 0
    for spec in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) < 3 or header[-1] == b"missing":
            blobs[spec] = None
            continue
        size = int(header[2])
        blobs[spec] = out[pos:pos + size]
        pos += size + 1
    return blobs
