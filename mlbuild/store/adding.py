"""`dvc add` of a new path done natively: commit it to the cache in one pass per file, then
write its .dvc pointer and .gitignore entry exactly as DVC does.

Why: DVC spends most of an add of 100,000 small files on per-file bookkeeping. Only the
plain case is done here (a path nothing tracks yet, copy or hardlink cache types); anything
else (re-adding, a path git tracks or a stage produces, symlinks) is left to DVC itself,
so that its answers and errors stay DVC's.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.yamlio import write_atomic
from mlbuild.store import gitignore
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import Hasher

COPY_TYPES = ("reflink", "copy")  # DVC's default: the workspace keeps its own files
# hardlink first: DVC links the files into the cache, as Cache.store then does (linkcommit)
LINK_TYPES = ("hardlink", *COPY_TYPES)


def native_types(types: list[str]) -> bool:
    """True for the cache types this add commits as DVC would: copies (the default), or
    hard links when `hardlink` comes first (symlinks and other orders are left to DVC)."""
    if types[:1] == ["hardlink"]:
        return all(t in LINK_TYPES for t in types)
    return all(t in COPY_TYPES for t in types)


def pointer_text(name: str, info: HashInfo) -> str:
    """A .dvc file for one output, in DVC 3's key order (md5, size, isexec / nfiles, hash,
    path), so that `dvc add` of the same data writes the same bytes."""
    from mlbuild.dvcfmt.yamlio import dump_yaml

    out = {**info.to_lock(), "hash": "md5", "path": name}
    return dump_yaml({"outs": [out]})


def _git_tracks(root: Path, rel: str) -> bool:
    """True when git tracks *rel* or anything under it (DVC refuses to add it)."""
    from mlbuild.gitrepo import GitError, git

    if not gitignore.in_git(root):
        return False
    try:
        return bool(git(root, "ls-files", "-z", "--", rel).strip(b"\0"))
    except GitError:
        return True  # unsure: DVC decides


def _autostage(root: Path) -> bool:
    """DVC's core.autostage setting."""
    from mlbuild.dvcfmt.dvcconfig import load

    value = (load(root).get("core") or {}).get("autostage")
    return str(value).lower() in ("true", "1", "yes") if value is not None else False


def plain(root: Path, rel: str, cache: Cache, taken: list[str]) -> bool:
    """True when adding *rel* is the plain case done here: a regular file or a directory
    (not a link), no .dvc file for it yet, overlapping no tracked or produced path in
    *taken*, not in git, not .dvcignore'd, the cache copies or hard-links (native_types),
    and DVC is not set to stage what it writes in git (core.autostage)."""
    from mlbuild.dvcfmt.dvcignore import IgnoreRules

    path = root / rel
    if path.is_symlink() or not (path.is_file() or path.is_dir()) or rel in ("", "."):
        return False
    if Path(f"{path}.dvc").exists() or not native_types(cache.types):
        return False
    if _autostage(root):  # DVC would also `git add` what it wrote: leave that to DVC
        return False
    if any(t == rel or t.startswith(rel + "/") or rel.startswith(t + "/") for t in taken):
        return False
    if IgnoreRules(root).ignored(rel, path.is_dir()):
        return False
    return not _git_tracks(root, rel)


def track(root: Path, rel: str, cache: Cache, hasher: Hasher) -> str:
    """Commit *rel* (a plain case, see plain()) and write its pointer; return the .dvc
    file's project-relative name."""
    path = root / rel
    info = cache.store(path, hasher)
    hasher.cache.save()  # the next status answers from it instead of rereading
    dvcfile = Path(f"{path}.dvc")
    write_atomic(dvcfile, pointer_text(path.name, info), f"{rel}.dvc")
    gitignore.ignore(root, rel)
    return os.path.relpath(dvcfile, root).replace(os.sep, "/")
