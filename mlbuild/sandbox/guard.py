"""What a hermetic stage may not change, and putting back what it changed anyway.

Before the run: the write policy the audit hook enforces (it refuses a Python write before it
happens), a copy of the files git cannot give back (untracked or modified), and the contents
of the tool metadata a stage could use to run code later (git hooks and config, DVC config,
dvc.yaml, params.yaml, .mlbuild/). After the run: what non-Python code changed is put back from
git or from those copies; the changed version is kept beside them, never deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.files.layout import DVC_FILE, PARAMS_FILE
from mlbuild.files.temp import tmp_beside
from mlbuild.gitrepo import GitError, git
from mlbuild.store.boundary import BoundaryError, ensure_inside

# Bytes of files neither git nor the DVC cache can give back, copied before one stage runs:
# beyond it, only the audit hook protects them (documented in the README).
COPY_BUDGET = 64 * 1024 * 1024
META_FILES = (DVC_FILE, PARAMS_FILE, ".dvc/config", ".dvc/config.local", ".git/config")
META_DIRS = (".git/hooks", ".git/info", ".mlbuild")


def targets(root: Path, paths: list[str]) -> dict[str, str]:
    """Where each of *paths* lands through symlinks, for those that land elsewhere inside the
    project."""
    real_root = os.path.realpath(root)
    found = {}
    for path in paths:
        real = os.path.relpath(os.path.realpath(root / path), real_root)
        if real != path and not real.startswith(".."):
            found[path] = real
    return found


def with_targets(root: Path, paths: list[str], known: dict[str, str] | None = None
                 ) -> list[str]:
    """*paths* and, where a symlink inside the project leads elsewhere, where they land
    (*known*: those landings, already resolved)."""
    landing = targets(root, paths) if known is None else known
    return sorted(set(paths) | {landing[p] for p in paths if p in landing})


def write_policy(path: Path, root: Path, outs: list[str], existing: Iterable[str],
                 others: list[str], allow: list[Path], known: dict[str, str] | None = None
                 ) -> None:
    """The rules the audit hook enforces (sitecustomize reads them on the first write).

    Declared paths are listed as written and as resolved through symlinks inside the
    project, since the hook judges a write where it lands."""
    doc = {"outs": with_targets(root, outs, known), "existing": sorted(existing),
           "others": with_targets(root, others, known),
           "allow": [os.path.realpath(p) for p in allow]}
    path.write_text(json.dumps(doc), encoding="utf-8")


def _watched(root: Path) -> list[str]:
    """The metadata files to compare after the run (small files only)."""
    found = [f for f in META_FILES if (root / f).is_file()]
    for top in META_DIRS:
        if (root / top).is_dir():
            found += [p.relative_to(root).as_posix() for p in (root / top).rglob("*")
                      if p.is_file() and not p.is_symlink()]
    return found


def _git_state(root: Path) -> tuple[set[str], set[str]]:
    """(tracked, modified) paths relative to *root*; both empty outside a git work tree."""
    try:
        out = git(root, "ls-files", "-z", "-t", "-c", "-m")
    except GitError:
        return set(), set()
    tracked: set[str] = set()
    modified: set[str] = set()
    for item in out.decode("utf-8", "surrogateescape").split("\0"):
        tag, _, rel = item.partition(" ")
        (modified if tag == "C" else tracked).add(rel)
    return tracked - {""}, modified


@dataclass
class Protection:
    """What was taken before one stage ran, to put back what it changed."""

    root: Path
    area: Path
    from_git: set[str] = field(default_factory=set)
    copies: dict[str, Path] = field(default_factory=dict)  # copies, or DVC cache objects
    modes: dict[str, int] = field(default_factory=dict)
    meta: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    unprotected: list[str] = field(default_factory=list)  # over the copy budget


def protect(root: Path, area: Path, existing: Iterable[str],
            in_cache: Callable[[str], Path | None], budget: int = COPY_BUDGET) -> Protection:
    """Take what is needed to restore *existing* files and the watched metadata: nothing for
    a file git has unchanged, or one whose content *in_cache* finds in the DVC cache."""
    prot = Protection(root, area)
    tracked, modified = _git_state(root)
    for rel in sorted(existing):
        if rel in tracked and rel not in modified:
            prot.from_git.add(rel)
            continue
        src = root / rel
        try:
            st = src.lstat()
        except OSError:
            continue
        size = st.st_size
        regular = stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
        obj = in_cache(rel) if stat.S_ISREG(st.st_mode) else None
        if obj is not None:
            prot.copies[rel], prot.modes[rel] = obj, st.st_mode
            continue
        if size > budget or not regular:  # a FIFO or device is never read
            prot.unprotected.append(rel)
            continue
        copy = area / "before" / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(src, copy, follow_symlinks=False)
        except OSError:
            prot.unprotected.append(rel)
            continue
        budget -= size
        prot.copies[rel] = copy
    for rel in _watched(root):
        path = root / rel
        prot.meta[rel] = (path.read_bytes(), path.stat().st_mode)
    return prot


def meta_changes(prot: Protection) -> list[str]:
    """Watched metadata files that changed, appeared or disappeared during the run."""
    now = set(_watched(prot.root))
    changed = sorted(now - set(prot.meta))
    for rel, (body, mode) in prot.meta.items():
        path = prot.root / rel
        try:
            if path.read_bytes() != body or path.stat().st_mode != mode:
                changed.append(rel)
        except OSError:
            changed.append(rel)
    return sorted(changed)


@dataclass
class Restored:
    """The outcome of putting files back."""

    restored: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # could not be put back
    kept: Path | None = None  # where the stage's versions were moved


def _keep(prot: Protection, rel: str, result: Restored) -> None:
    """Move the stage's version aside (never delete it: it may be the user's own edit)."""
    path = prot.root / rel
    if not os.path.lexists(path):
        return
    result.kept = prot.area / "changed"
    aside = result.kept / rel
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, aside)


def _restore_one(prot: Protection, rel: str) -> bool:
    """Write the pre-run version of *rel* back; False when there is none to write."""
    path = prot.root / rel
    if not (rel in prot.meta or rel in prot.copies or rel in prot.from_git):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_inside(prot.root, path)
    tmp = tmp_beside(path)  # our pid in its name: a parallel stage's snapshot leaves it out
    if rel in prot.meta:
        body, mode = prot.meta[rel]
        tmp.write_bytes(body)
        tmp.chmod(mode & 0o7777)
    elif rel in prot.copies:
        shutil.copy2(prot.copies[rel], tmp, follow_symlinks=False)
        if rel in prot.modes:  # a read-only cache object: the file's own mode back
            tmp.chmod(prot.modes[rel] & 0o7777)
    else:
        with open(tmp, "wb") as fobj:
            git(prot.root, "show", f":./{rel}", stdout=fobj)
        git_mode = git(prot.root, "ls-files", "-s", "--", rel)[:6]
        tmp.chmod(0o755 if git_mode == b"100755" else 0o644)
    os.replace(tmp, path)
    return True


def put_back(prot: Protection, changed: Iterable[str]) -> Restored:
    """Restore every changed file to its pre-run version; files that did not exist before are
    moved aside. Nothing is deleted: the stage's versions are kept under the area."""
    result = Restored()
    for rel in sorted(changed):
        if rel in prot.unprotected:
            result.lost.append(rel)  # left as the stage made it: there is no copy to restore
            continue
        try:
            _keep(prot, rel, result)
            _restore_one(prot, rel)  # False: it was new, and moving it aside undid it
            result.restored.append(rel)
        except (OSError, BoundaryError, GitError):
            result.lost.append(rel)
    return result


def tidy(guard: Path, stem: str, keep: Path | None = None) -> None:
    """Clean one stage's areas under *guard* (named '<stem>-<8 hex>'): the copies of earlier
    runs (a killed run leaves them), and with *keep*, every other area (its versions replace
    the older ones); without, an earlier run's kept versions stay until then."""
    name = re.compile(re.escape(stem) + r"-[0-9a-f]{8}")
    try:
        areas = [p for p in guard.iterdir() if name.fullmatch(p.name) and p != keep]
    except OSError:
        return
    for area in areas:  # no other run of this stage is running: the project lock is held
        if keep is not None or not (area / "changed").is_dir():
            shutil.rmtree(area, ignore_errors=True)
        else:
            shutil.rmtree(area / "before", ignore_errors=True)
