"""Which model to serve: NAME, NAME@VERSION, NAME#STAGE or a plain artifact path resolved to
one version, its artifact fetched from the cache or the DVC remote (verified by its hash), and
unpickled once."""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlbuild.errors import UsageError
from mlbuild.registry import fetch
from mlbuild.registry.evidence import declared, gather
from mlbuild.registry.state import Registry
from mlbuild.store.cache import Cache

DEFAULT_STAGE = "prod"  # a bare NAME serves the version in this stage, else the latest


@dataclass(frozen=True)
class Source:
    """One resolved model version, its artifact verified and in the local cache."""

    name: str
    version: str  # vX.Y.Z, or 'file-<md5 prefix>' for a plain path
    commit: str | None  # None: a plain path in the working tree
    path: Path  # the bytes to unpickle (a cache object or the plain file)
    md5: str
    stage: str | None = None  # the stage it was resolved through (NAME#STAGE), if any


def _is_path(root: Path, ref: str) -> bool:
    return ref.endswith((".pkl", ".pickle", ".joblib")) or (root / ref).is_file() or \
        Path(ref).is_file()


def _by_path(root: Path, ref: str) -> Source:
    path = Path(ref) if Path(ref).is_absolute() else (Path.cwd() / ref)
    if not path.is_file():
        raise UsageError(f"{ref}: no such model file (name a registered model as NAME, "
                         "NAME@vX.Y.Z or NAME#STAGE, or give the path of a pickled model)")
    rel = path.resolve().relative_to(root.resolve()).as_posix() if path.resolve().is_relative_to(
        root.resolve()) else None
    name = next((n for n, a in declared(root).items() if a.get("path") == rel), path.stem)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return Source(name, f"file-{md5[:12]}", None, path, md5)


def _version_of(root: Path, ref: str) -> tuple[str, str, str | None]:
    """(name, version, stage) for NAME, NAME@VERSION, NAME#STAGE."""
    if "@" in ref or "#" in ref:
        name, version = fetch.resolve(root, ref)
        return name, version, ref.split("#", 1)[1] if "#" in ref else None
    registry = Registry.read(root)
    holder = registry.holder(ref, DEFAULT_STAGE)
    if holder is not None:
        return ref, holder, DEFAULT_STAGE
    name, version = fetch.resolve(root, f"{ref}@latest")  # unknown model: the registry's error
    return name, version, None


def resolve(root: Path, ref: str) -> Source:
    """The version *ref* names, its artifact fetched into the cache and verified."""
    if _is_path(root, ref) and "@" not in ref and "#" not in ref:
        return _by_path(root, ref)
    return fetch_version(root, *_version_of(root, ref))


def pick(root: Path, ref: str) -> tuple[str, str, str | None]:
    """(name, version, stage) that a registry reference names now (nothing fetched)."""
    return _version_of(root, ref)


def fetch_version(root: Path, name: str, version: str, stage: str | None = None) -> Source:
    """A registered version's artifact, from the cache or the DVC remote, verified."""
    commit = Registry.read(root).versions(name)[version].commit
    evidence = gather(root, name, commit)
    if evidence.info.isdir:
        raise UsageError(f"model '{name}' {version}: {evidence.path} is a directory; "
                         "'mlbuild serve' serves a single pickled model file")
    cache = Cache(root)
    fetch._fill(root, cache, evidence)  # from the remote when missing, checked by hash
    cache.verify(evidence.info)  # a damaged local object: IntegrityError, nothing served
    return Source(name, version, commit, cache.object_path(evidence.info.md5),
                  evidence.info.md5, stage)


@contextlib.contextmanager
def _project_importable(root: Path) -> Iterator[None]:
    """The project's own modules (its stages' transformers) importable while unpickling;
    sys.path is put back after, the imported modules stay (the model calls them)."""
    entry = str(root)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def load(root: Path, source: Source) -> object:
    """Unpickle the artifact: a pickle the project's own stages wrote, so trusted as the
    project's code is."""
    data = source.path.read_bytes()
    if hashlib.md5(data).hexdigest() != source.md5:
        raise UsageError(f"{source.path} changed while it was being loaded; try again")
    with _project_importable(root):
        try:
            return pickle.loads(data)  # the project's own stage wrote it: trusted as its code
        except Exception as exc:  # unpickling foreign bytes can raise anything at all
            raise UsageError(f"model '{source.name}' {source.version}: {source.path} is not "
                             f"a loadable pickle ({type(exc).__name__}: {exc})") from exc
