"""Integrity of the local cache (every object matches its hash) and garbage collection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.errors import IntegrityError
from mlbuild.store.cache import Cache
from mlbuild.store.hashing import md5_file


@dataclass
class Corrupt:
    """An object whose content does not match its name."""

    path: str
    expected: str
    actual: str
    problem: str = ""  # set when the hash matches but the content is unsafe to check out


def objects(cache: Cache) -> list[tuple[str, Path]]:
    """(md5, path) of every object in the cache (temporary files excluded)."""
    found: list[tuple[str, Path]] = []
    if not cache.files.is_dir():
        return found
    for folder in sorted(cache.files.iterdir()):
        if len(folder.name) != 2 or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.name.startswith(".") and not path.name.endswith(".tmp"):
                found.append((folder.name + path.name, path))
    return found


def check_object(md5: str, path: Path) -> Corrupt | None:
    """Rehash one object; a .dir object must also be a manifest that is safe to check out
    (its hash only proves that nobody changed it since it was named, not who wrote it)."""
    actual = md5_file(path)
    expected = md5.removesuffix(".dir")
    if actual != expected:
        return Corrupt(str(path), md5, actual)
    if md5.endswith(".dir"):
        from mlbuild.store.hashing import parse_manifest

        try:
            parse_manifest(path.read_bytes(), path)
        except (ValueError, IntegrityError) as exc:
            return Corrupt(str(path), md5, actual, problem=str(exc).split("; ", 1)[0])
    return None


def fsck(cache: Cache, only: set[str] | None = None, remove: bool = False) -> list[Corrupt]:
    """Verify every object (or those in *only*); with remove, delete the corrupted ones."""
    bad = []
    for md5, path in objects(cache):
        if only is not None and md5 not in only:
            continue
        corrupt = check_object(md5, path)
        if corrupt:
            bad.append(corrupt)
            if remove:
                path.chmod(0o644)
                path.unlink()
    return bad


@dataclass
class GcPlan:
    """What garbage collection would remove."""

    remove: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # bytes of each object in remove
    size: int = 0
    kept: int = 0
    restored: list[str] = field(default_factory=list)  # stranded backups put back
    leftovers: list[str] = field(default_factory=list)  # abandoned temporary files, backups


def expand(cache: Cache, used: set[str]) -> set[str]:
    """Add the entries of every used directory manifest that is in the cache."""
    out = set(used)
    for md5 in used:
        if md5.endswith(".dir") and cache.object_path(md5).is_file():
            try:
                out.update(entry for _, entry in cache.manifest(md5))
            except (ValueError, KeyError, TypeError) as exc:  # its files must not look unused
                raise IntegrityError(
                    f"directory manifest {cache.object_path(md5)} is unreadable, so the files "
                    "it lists cannot be told from garbage; run 'mlbuild data fsck --repair' "
                    "and pull or rebuild it first"
                ) from exc
    return out


def gc_plan(cache: Cache, used: set[str]) -> GcPlan:
    """Objects not in *used* (expanded through directory manifests)."""
    keep = expand(cache, used)
    plan = GcPlan()
    for md5, path in objects(cache):
        if md5 in keep:
            plan.kept += 1
        else:
            plan.remove.append(path)
            plan.sizes.append(path.stat().st_size)
            plan.size += plan.sizes[-1]
    return plan
