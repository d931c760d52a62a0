"""Every object that enters the local cache from a remote is checked against its hash here,
before anything checks it out: `mlbuild pull`, the automatic pull of `run`, `run --pull` and
verify's pull all come through this module."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.errors import IntegrityError
from mlbuild.store import remotes as remote
from mlbuild.store.cache import Cache
from mlbuild.store.integrity import Corrupt
from mlbuild.store.tracked import TrackedOut


@dataclass
class Fetched:
    """What a verified fetch did."""

    count: int
    refetched: list[str] = field(default_factory=list)  # local copies that failed and were replaced
    corrupt: list[Corrupt] = field(default_factory=list)  # still wrong after a fresh fetch


def expand(cache: Cache, outs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """md5 -> workspace path of these outputs and of every file their manifests (when in the
    cache) list."""
    needed: dict[str, str] = {}
    for path, md5 in outs:
        needed.setdefault(md5, path)
        if md5.endswith(".dir") and cache.has_md5(md5):
            try:
                entries = cache.manifest(md5)
            except (ValueError, IntegrityError):
                if cache.verifier(cache.object_path(md5)) != md5.removesuffix(".dir"):
                    continue  # damaged in transit: it fails its own hash check, is refetched
                raise  # genuine and unsafe: never handed to a checkout (DVC's would follow it)
            for rel, entry in entries:
                needed.setdefault(entry, f"{path}/{rel}")
    return needed


def check(cache: Cache, md5s: Iterable[str]) -> list[Corrupt]:
    """Rehash the objects present among *md5s*; remove (and return) those that do not match."""
    bad = []
    for md5 in md5s:
        path = cache.object_path(md5)
        if not path.is_file():
            continue
        actual = cache.verifier(path)
        if actual != md5.removesuffix(".dir"):
            bad.append(Corrupt(str(path), md5, actual))
            path.chmod(0o644)
            path.unlink()
    return bad


def fetch_verified(root: Path, cache: Cache, fetch: Callable[[], int],
                   wanted: Callable[[], dict[str, str]], remote_name: str | None,
                   refetch_missing: bool = True) -> Fetched:
    """Run *fetch*, then check every object *wanted* names. A damaged local copy (and, with
    *refetch_missing*, a missing one: both are what an interrupted earlier transfer leaves) is
    fetched again by its hash, once; what still fails its hash is removed and returned in
    `corrupt`, so it is never checked out."""
    count = fetch()
    needed = wanted()
    first = check(cache, needed)
    absent = {m for m in needed if not cache.has_md5(m)} if refetch_missing else set()
    retry = sorted({b.expected for b in first} | absent)
    if not retry:
        return Fetched(count)
    remote.fetch_objects(root, retry, remote_name)
    needed = wanted()  # manifests fetched just now name more files
    missing = [m for m in needed if m not in retry and not cache.has_md5(m)]
    if missing and refetch_missing:
        remote.fetch_objects(root, missing, remote_name)
    corrupt = check(cache, needed)
    refetched = [b.expected for b in first if cache.has_md5(b.expected)]
    return Fetched(count + len(retry), refetched=refetched, corrupt=corrupt)


def tracked_objects(cache: Cache, outs: list[TrackedOut]) -> dict[str, str]:
    """Every object these .dvc-tracked outputs need."""
    return expand(cache, [(o.path, o.info.md5) for o in outs])


def pull_tracked(root: Path, cache: Cache, outs: list[TrackedOut],
                 remote_name: str | None = None) -> Fetched:
    """Fetch the objects of .dvc-tracked outputs into *cache*, verified; corrupted ones raise."""
    dvcfiles = sorted({o.dvcfile for o in outs})
    result = fetch_verified(
        root, cache, lambda: remote.fetch(root, dvcfiles, remote_name, run_cache=False),
        lambda: tracked_objects(cache, outs), remote_name)
    if result.corrupt:
        raise IntegrityError(corrupt_message(result.corrupt, tracked_objects(cache, outs)))
    return result


def corrupt_message(bad: list[Corrupt], needed: dict[str, str]) -> str:
    """The remote's copies of these objects fail their hash: name them and the fix."""
    items = [f"{needed.get(b.expected, b.expected)} (object {b.path}: expected md5 "
             f"{b.expected.removesuffix('.dir')}, found {b.actual})" for b in bad]
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return (f"{len(bad)} object(s) fetched from the remote are corrupted; they were removed "
            f"from the local cache and nothing was checked out: {'; '.join(items[:3])}{more}; "
            "push a good one from a machine that has it, or rebuild with 'mlbuild run'")


def runcache_outputs(cache: Cache) -> list[tuple[str, str]]:
    """(path, md5) of every output the local run-cache entries name: DVC pushes every entry,
    so a clone's `run --pull` may ask for any of them."""
    from mlbuild.dvcfmt.lockfile import LockEntry
    from mlbuild.dvcfmt.yamlio import parse_yaml
    from mlbuild.store.runcache import valid_out

    runs = cache.dir / "runs"
    found: list[tuple[str, str]] = []
    for entry in sorted(runs.glob("*/*/*")) if runs.is_dir() else []:
        if entry.name.endswith(".tmp") or not entry.is_file():
            continue
        try:
            data = parse_yaml(entry.read_text(encoding="utf-8"), str(entry))
        except Exception:  # an unreadable entry is skipped, as DVC does
            continue
        outs = data.get("outs") if isinstance(data, dict) else None
        if isinstance(outs, list) and all(map(valid_out, outs)):  # else skipped, as lookup
            found += [(f"{path} (run-cache)", md5)
                      for path, md5 in LockEntry.parse(data).out_md5s().items()]
    return found


def complete_push(root: Path, cache: Cache, needed: dict[str, str],
                  remote_name: str | None) -> int:
    """After DVC's push, make sure the remote itself holds every needed object the local cache
    has, sending what is absent (an earlier push killed midway leaves DVC's remote index
    claiming directories whose files never arrived). Returns how many were sent."""
    from mlbuild.store.remotes import RemoteError, missing_on_remote, send_objects

    absent = missing_on_remote(root, set(needed), remote_name)
    sendable = {m for m in absent if cache.has_md5(m)}
    if not sendable:
        return 0
    sent = send_objects(root, sendable, remote_name)
    still = sorted(missing_on_remote(root, sendable, remote_name))
    if still:
        raise RemoteError(f"{len(still)} object(s) are still not on the remote after the "
                          f"push: {', '.join(f'{needed[m]} (md5 {m})' for m in still[:3])}")
    return sent
