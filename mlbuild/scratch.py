"""Isolated scratch workspaces: a clean checkout of the current revision, outside the project."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mlbuild.cache import Cache
from mlbuild.errors import UsageError
from mlbuild.tracked import find_pointers


def _git(root: Path, *args: str) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UsageError(
            f"verify needs a git repository with at least one commit ({root}): "
            f"git {' '.join(args)} failed"
        ) from exc
    return proc.stdout


def revision(root: Path) -> tuple[str, bool]:
    """The HEAD commit and whether the work tree has uncommitted changes."""
    sha = _git(root, "rev-parse", "HEAD").decode().strip()
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    return sha, dirty


def checkout(root: Path, dest: Path) -> None:
    """Extract the HEAD tree of *root* into *dest* (no .git, no cache, no ignored files)."""
    data = _git(root, "archive", "--format=tar", "HEAD")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    (dest / ".dvc").mkdir(exist_ok=True)
    # a committed cache.dir (a shared cache) would let the rebuild write into the user's cache
    (dest / ".dvc" / "config.local").write_text("[cache]\n    dir = cache\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(dest)], check=True, capture_output=True)


def seed_data(root: Path, dest: Path) -> list[str]:
    """Copy the objects of .dvc-tracked data from the user's cache (read only) into the
    scratch cache; return the pointer files whose data must be pulled from the remote."""
    source, target = Cache(root), Cache(dest)
    missing = []
    for out in find_pointers(dest, [], everything=True):
        if not source.complete(out.info):
            missing.append(out.dvcfile)
            continue
        md5s = [out.info.md5]
        if out.info.isdir:
            md5s += [md5 for _, md5 in source.manifest(out.info.md5)]
        for md5 in md5s:
            obj = target.object_path(md5)
            if not obj.exists():
                obj.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.object_path(md5), obj)
    return sorted(set(missing))


def make(prefix: str = "mlbuild-verify-") -> Path:
    """A fresh temporary directory outside the project."""
    return Path(tempfile.mkdtemp(prefix=prefix))
