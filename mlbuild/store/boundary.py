"""The project boundary: no declared path may lead out of the project through a symlink, into
tool metadata, or onto a special file (FIFO, device, socket) that would hang a read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.errors import BadInputError
from mlbuild.files.layout import DVC_FILE

if TYPE_CHECKING:
    from mlbuild.pipeline.model import Stage

METADATA = (".git", ".dvc")  # the first path component no declared path may resolve into
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class BoundaryError(BadInputError):
    """A declared path leaves the project or names a special file (exit 2)."""


def special_kind(mode: int) -> str | None:
    """'a FIFO', 'a character device'...: what a non-regular, non-directory file is."""
    return next((name for test, name in _KINDS if test(mode)), None)


def refuse_special(path: Path | str, mode: int, shown: str | None = None) -> None:
    """Raise BoundaryError when *mode* (from stat, following links) is a special file:
    opening one for hashing would block forever or read without end."""
    kind = special_kind(mode)
    if kind is not None:
        raise BoundaryError(
            f"'{shown or path}' is {kind}, not a regular file or directory; mlbuild never "
            "reads one as data: remove it from the declared path, or declare a regular file"
        )


def _inside(real: str, top: str) -> bool:
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class Resolver:
    """os.path.realpath of folders, remembered: checking a thousand declared paths in a few
    folders resolves each folder once, not once per path."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def folder(self, path: str) -> str:
        """The real path of a folder (remembered)."""
        if path not in self._dirs:
            self._dirs[path] = os.path.realpath(path)
        return self._dirs[path]


def _first_part(target: str, top: str) -> str | None:
    """The first component of *target* below *top* ('' for *top* itself), None outside it."""
    if target == top:
        return ""
    prefix = top.rstrip(os.sep) + os.sep
    return target[len(prefix):].split(os.sep, 1)[0] if target.startswith(prefix) else None


def check_path(root: Path, rel: str, what: str, cache_dir: Path | None = None,
               resolver: Resolver | None = None) -> None:
    """Refuse *rel* (a project-relative declared path) when, resolved through symlinks, it
    leaves the project or lands in .git/.dvc, or when it is a special file.

    The last component may be a link into the DVC cache (cache.type symlink), wherever the
    cache lives; its parent directories may not lead out. One lstat per path: this runs for
    every declared path on every build, a no-op one included.
    """
    full = str(root / rel)
    try:
        mode: int | None = os.lstat(full).st_mode
    except OSError:  # not there (yet): nothing to read
        mode = None
    link = mode is not None and stat.S_ISLNK(mode)
    if mode is not None:
        with suppress(OSError):  # a dangling link: nothing to read either
            refuse_special(rel, os.stat(full).st_mode if link else mode)  # noqa: PTH116
    resolve = resolver or Resolver()
    real_root = resolve.folder(str(root))
    folder, name = os.path.split(full)
    parent = resolve.folder(folder)
    real = os.path.realpath(full) if link else f"{parent.rstrip(os.sep)}{os.sep}{name}"
    linked_into_cache = (link and cache_dir is not None
                         and _inside(real, resolve.folder(str(cache_dir))))
    for target in [parent] if linked_into_cache else [parent, real]:
        inner = _first_part(target, real_root)
        if inner is None:
            raise BoundaryError(f"{what} '{rel}' leads out of the project through a symlink: "
                                f"it really is '{real}'; declare a path inside the project")
        if inner in METADATA:
            raise BoundaryError(f"{what} '{rel}' leads into tool metadata through a symlink: "
                                f"it really is '{real}'")


def stage_paths(stage: Stage) -> list[tuple[str, str]]:
    """Every path a stage declares, with how to name it in an error."""
    loc = f"stage '{stage.name}'"
    found = [(stage.wdir, f"{loc}: wdir")] if stage.wdir != "." else []
    found += [(d.path, f"{loc}: dependency") for d in stage.deps]
    found += [(p.path, f"{loc}: params file") for p in stage.params]
    found += [(o.path, f"{loc}: {o.kind} path") for o in stage.outs]
    return found


def check_paths(root: Path, paths: Iterable[tuple[str, str]], cache_dir: Path | None) -> None:
    """check_path for every (path, description) pair."""
    resolver = Resolver()
    for rel, what in paths:
        check_path(root, rel, what, cache_dir, resolver)


def _links_under(top: str) -> list[str]:
    """Relative paths of every symlink under the directory *top* (links are not entered)."""
    found, todo = [], [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(top, rel)) as entries:  # noqa: PTH118 - scandir strings
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    found.append(sub)
                elif entry.is_dir():
                    todo.append(sub)
    return found


def check_outputs(root: Path, stage: Stage, cache_dir: Path | None) -> None:
    """check_path for a stage's outputs as its command left them, and for every symlink inside
    a directory output: DVC would follow such a link and commit what it leads to."""
    for out in stage.outs:
        rel, what = out.path, f"stage '{stage.name}': {out.kind} path"
        check_path(root, rel, what, cache_dir)
        full = root / rel
        if full.is_dir() and not full.is_symlink():
            for sub in sorted(_links_under(str(full))):
                check_path(root, f"{rel}/{sub}", what, cache_dir)


def ensure_inside(root: Path, path: Path) -> None:
    """Refuse to write at *path* when its directory resolves outside the project: the last
    guard before moving aside, checking out or writing a .gitignore."""
    real = os.path.realpath(path.parent)
    if not _inside(real, os.path.realpath(root)):
        raise BoundaryError(f"'{os.path.relpath(path, root)}' leads out of the project through "
                            f"a symlink (its directory really is '{real}'); nothing was written")


def check_project(root: Path) -> None:
    """check_path for every stage's and every .dvc file's paths (before a DVC checkout)."""
    from mlbuild.dvcfmt.dvcconfig import cache_dir
    from mlbuild.dvcfmt.dvcyaml import load_pipeline
    from mlbuild.store.tracked import find_pointers

    paths = []
    if (root / DVC_FILE).is_file():
        paths = [p for s in load_pipeline(root).stages.values() for p in stage_paths(s)]
    paths += [(t.path, f"{t.dvcfile}: tracked path")
              for t in find_pointers(root, [], everything=True)]
    check_paths(root, paths, cache_dir(root))
