"""Data tracked by .dvc pointer files (like data.dvc): find it, and restore it when missing."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.errors import ConfigError
from mlbuild.files.names import fits
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import Hasher, tree_manifest


@dataclass(frozen=True)
class TrackedOut:
    """One output of a .dvc pointer file."""

    dvcfile: str
    path: str
    info: HashInfo


POINTER_LISTING = ("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                   "*.dvc")


def every_pointer_file(root: Path, listing: Callable[[], bytes] | None = None) -> set[str]:
    """Every .dvc pointer file of the project (git's view when it is a git work tree);
    *listing* is git_later(root, *POINTER_LISTING) when the caller started it earlier."""
    from mlbuild.gitrepo import GitError, git

    try:
        out = listing() if listing is not None else git(root, *POINTER_LISTING)
        return {n for n in out.decode().split("\0") if n and (root / n).is_file()}
    except GitError:
        found = set()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, root)
            found |= {n if rel == "." else f"{rel}/{n}" for n in filenames if n.endswith(".dvc")}
        return found


def find_pointers(root: Path, paths: list[str], everything: bool = False,
                  listing: Callable[[], bytes] | None = None) -> list[TrackedOut]:
    """Outputs of root-level .dvc files and of '<path>.dvc' files next to *paths* (with
    everything, of every .dvc file in the project; *listing* as every_pointer_file takes)."""
    files = {p.name for p in root.glob("*.dvc") if p.is_file()}
    if everything:
        files |= every_pointer_file(root, listing)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            cand = "/".join(parts[:i]) + ".dvc"
            if fits(parts[i - 1] + ".dvc") and (root / cand).is_file():
                files.add(cand)
    found = []
    for name in sorted(files):
        base = posixpath.dirname(name)
        for out in _pointer_outs(_load_pointer(root, name), name):
            rel = posixpath.normpath(posixpath.join(base, str(out["path"])))
            info = HashInfo.from_entry(out)
            found.append(TrackedOut(dvcfile=name, path=rel, info=info))
    return found


def _load_pointer(root: Path, name: str) -> dict[str, Any]:
    """A .dvc file's mapping, answered from the parsed-YAML memo when it is unchanged (a no-op
    build does not load PyYAML), checked once per change."""
    from mlbuild.dvcfmt.memo import load_yaml_memo
    from mlbuild.files.layout import state_dir

    def check(data: Any) -> None:
        _pointer_outs(_mapping(data, name), name)

    return _mapping(load_yaml_memo(root / name, name, state_dir(root) / "parsed", check), name)


def _mapping(data: Any, name: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping at the top level")
    return data


def _pointer_outs(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The hashed outputs of a .dvc file, each checked for the types DVC writes."""
    outs = data.get("outs") or []
    if not isinstance(outs, list):
        raise ConfigError(f"{name}: 'outs' must be a list of {{path, md5, size}} entries")
    for idx, out in enumerate(outs):
        if not isinstance(out, dict):
            raise ConfigError(f"{name}: outs[{idx}] must be a mapping with 'path' and 'md5'")
        for key, kinds in (("path", (str,)), ("md5", (str,)), ("size", (int, type(None))),
                           ("nfiles", (int, type(None)))):
            value = out.get(key)
            if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                raise ConfigError(f"{name}: outs[{idx}].{key}: expected "
                                  f"{'a number' if int in kinds else 'a string'}, got {value!r}")
    return [o for o in outs if o.get("path") and o.get("md5")]


def covers(tracked: list[TrackedOut], path: str) -> TrackedOut | None:
    """The tracked output that is *path* or contains it."""
    for out in tracked:
        if path == out.path or path.startswith(out.path + "/"):
            return out
    return None


def restore_missing(root: Path, tracked: list[TrackedOut], cache: Cache) -> list[str]:
    """Check out missing tracked data from the local cache; return pointers needing a pull."""
    need_pull = []
    for out in tracked:
        dest = root / out.path
        if dest.exists():
            continue
        if cache.complete(out.info):
            cache.checkout(out.info, dest)
        else:
            need_pull.append(out.dvcfile)
    return sorted(set(need_pull))


@dataclass(frozen=True)
class TrackedChange:
    """A .dvc-tracked output that differs from its pointer file, in `dvc status`'s words."""

    dvcfile: str
    path: str
    change: str  # 'modified', 'deleted' or 'not in cache'
    files: tuple[str, ...] = ()  # in a modified directory: the files added, changed, removed


def _current(hasher: Hasher, rel: str) -> HashInfo | None:
    """The path's hash now (None when it is gone)."""
    full = hasher.root / rel
    if full.is_dir():
        return hasher.directory(full)[0]
    return hasher.path(rel)


def changed_files(cache: Cache, recorded: str, entries: list[tuple[str, str]]
                  ) -> list[str] | None:
    """Relpaths that differ between a recorded .dir manifest and a directory's entries now
    (added, changed or removed); None when the manifest is not in the cache."""
    if not cache.has_md5(recorded):
        return None
    try:  # only names are compared and shown: no need for manifest()'s per-entry checks
        items = json.loads(cache.object_path(recorded).read_bytes())
        before = {str(i["relpath"]): i["md5"] for i in items}
    except (OSError, ValueError, TypeError, KeyError):
        return None
    # one pass, popping what is seen: what is left in *before* was removed (sets of pairs
    # cost more: 100,000 tuples hashed)
    pop = before.pop
    return sorted([rel for rel, md5 in entries if pop(rel, None) != md5] + list(before))


def _change(out: TrackedOut, hasher: Hasher, cache: Cache) -> tuple[str, list[str]] | None:
    """How a tracked output differs from its pointer ('modified' with the files of a
    directory, 'deleted'), or None when it does not.

    A directory is compared entry by entry with its recorded manifest: equal entries are an
    equal manifest (its hash is a function of them), so the manifest is not rebuilt."""
    full = hasher.root / out.path
    if out.info.isdir and full.is_dir():
        from mlbuild.store.dirscan import scan

        found = scan(hasher, full, want_tree=False)
        files = found.memo.changed_since(out.info.md5)  # the memo may know the recorded state
        entries = found.entries if files is None else []
        if files is None:
            files = changed_files(cache, out.info.md5, entries)
        if files is not None:
            return ("modified", [f"{out.path}/{rel}" for rel in files]) if files else None
        same = tree_manifest(entries)[1] == out.info.md5
        return None if same else ("modified", [])
    current = _current(hasher, out.path)
    if current is None:
        return "deleted", []
    return None if current.md5 == out.info.md5 else ("modified", [])


def changes(tracked: list[TrackedOut], hasher: Hasher, cache: Cache) -> list[TrackedChange]:
    """Tracked outputs edited, deleted or missing from the cache, as `dvc status` reports them
    whether or not a stage reads them; a modified directory names its changed files."""
    found = []
    for out in tracked:
        diff = _change(out, hasher, cache)
        if diff is not None:
            found.append(TrackedChange(out.dvcfile, out.path, diff[0], tuple(diff[1])))
        elif not cache.complete(out.info):
            found.append(TrackedChange(out.dvcfile, out.path, "not in cache"))
    return found
