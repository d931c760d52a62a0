"""Reading the registry out: a version's artifact fetched from the cache or the DVC remote,
verified by hash, without checking its commit out; and the tags pushed to a git remote."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlbuild.errors import CheckFailedError, UsageError, did_you_mean
from mlbuild.files.temp import tmp_beside
from mlbuild.gitrepo import GitError, git
from mlbuild.history import notes
from mlbuild.registry import tags
from mlbuild.registry.evidence import Evidence, gather
from mlbuild.registry.ops import normalise
from mlbuild.registry.state import Registry
from mlbuild.store.cache import Cache

_REF = re.compile(r"^(?P<name>[^@#]+)(@(?P<version>[^@#]+)|#(?P<stage>[^@#]+))$")


@dataclass(frozen=True)
class Got:
    """What `model get` wrote."""

    model: str
    version: str
    path: Path
    md5: str
    fetched: int  # objects downloaded from the remote


def resolve(root: Path, ref: str) -> tuple[str, str]:
    """NAME@VERSION (or NAME@latest) or NAME#STAGE -> (name, version)."""
    match = _REF.match(ref)
    if match is None:
        raise UsageError(f"'{ref}': name a version as NAME@vX.Y.Z or a stage as NAME#STAGE")
    name, registry = match["name"], Registry.read(root)
    versions = registry.versions(name)
    if not versions:
        raise UsageError(f"unknown model '{name}': it has no registered version (models: "
                         f"{', '.join(registry.names()) or 'none'})")
    if match["stage"]:
        holder = registry.holder(name, match["stage"])
        if holder is None:
            raise UsageError(f"no version of model '{name}' holds stage '{match['stage']}'")
        return name, holder
    version = registry.latest(name) if match["version"] == "latest" else normalise(
        match["version"])
    if version not in versions:
        raise UsageError(f"model '{name}' has no version {version} (registered: "
                         f"{', '.join(sorted(versions))})")
    return name, str(version)


def _fill(root: Path, cache: Cache, evidence: Evidence) -> int:
    """Bring every object of the artifact into the cache, each checked against its hash."""
    from mlbuild.store import remotes
    from mlbuild.store.transfer import check, expand

    def wanted() -> dict[str, str]:
        return expand(cache, [(evidence.path, evidence.info.md5)])

    check(cache, wanted())  # a damaged local copy is dropped and fetched again
    fetched = 0
    for _ in range(2):  # a directory's manifest first names its files
        missing = [m for m in wanted() if not cache.has_md5(m)]
        if not missing:
            break
        remotes.fetch_objects(root, missing, None)
        bad = check(cache, wanted())
        if bad:
            raise CheckFailedError(f"{evidence.path} from the DVC remote does not match its "
                                   f"hash ({bad[0].expected}); it was not written")
        fetched += len(missing)
    if any(not cache.has_md5(m) for m in wanted()):
        raise CheckFailedError(f"model '{evidence.name}': neither the local cache nor the DVC "
                               f"remote has {evidence.path} ({evidence.info.md5}); push it "
                               "from a clone that has it ('mlbuild model push')")
    return fetched


def _write(cache: Cache, evidence: Evidence, dest: Path) -> None:
    entries = cache.verify(evidence.info)  # IntegrityError: nothing is written
    files = [("", evidence.info.md5)] if not evidence.info.isdir else entries
    for rel, md5 in files:
        target = dest / rel if rel else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_beside(target)
        try:
            shutil.copyfile(cache.object_path(md5), tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def get(root: Path, ref: str, out: Path | None, force: bool) -> Got:
    """Write the artifact of NAME@VERSION / NAME#STAGE to *out* (default: its file name in
    the current directory)."""
    name, version = resolve(root, ref)
    commit = Registry.read(root).versions(name)[version].commit
    evidence = gather(root, name, commit)
    dest = (out or Path(Path(evidence.path).name)).absolute()
    if dest.exists() and not force:
        raise UsageError(f"{dest} already exists; remove it, choose another with -o, or use "
                         "--force")
    cache = Cache(root)
    fetched = _fill(root, cache, evidence)
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
    _write(cache, evidence, dest)
    return Got(name, version, dest, evidence.info.md5, fetched)


def _known_remote(root: Path, git_remote: str) -> None:
    remotes = git(root, "remote").decode().split()
    if git_remote not in remotes:
        raise UsageError(f"unknown git remote '{git_remote}'{did_you_mean(git_remote, remotes)} "
                         f"(configured: {', '.join(remotes) or 'none'})")


def pull_shared(root: Path, git_remote: str) -> tuple[int, bool]:
    """Fetch the registry's tags from *git_remote* and merge its shared findings into ours;
    (tags known after, whether the remote had findings)."""
    _known_remote(root, git_remote)
    try:
        git(root, "fetch", "-q", "--tags", git_remote)
        merged = notes.fetch(root, git_remote)
    except GitError as exc:
        raise CheckFailedError(f"git fetch from '{git_remote}' failed; see 'git fetch "
                               f"{git_remote}' for git's own message") from exc
    return len(Registry.read(root).events), merged


def push(root: Path, git_remote: str) -> list[str]:
    """Send every registry tag to *git_remote*, after the DVC remote has every artifact the
    local cache holds for them; returns the tags."""
    from mlbuild.registry.checks import needed
    from mlbuild.store.remotes import missing_on_remote, send_objects

    registry = Registry.read(root)
    cache = Cache(root)
    for name in registry.names():
        for event in registry.versions(name).values():
            objects = {m for m in needed(root, gather(root, name, event.commit))
                       if cache.has_md5(m)}
            missing = missing_on_remote(root, objects, None)
            if missing:
                send_objects(root, missing, None)
    names = [e.tag for e in registry.events]
    _known_remote(root, git_remote)
    if names:
        try:
            tags.push(root, git_remote, names)
        except GitError as exc:
            raise CheckFailedError(f"git push of the registry's tags to '{git_remote}' failed "
                                   "(a tag of the same name and other content there?); see "
                                   "'git push --tags' for git's own message") from exc
    try:
        notes.sync(root, git_remote)
    except GitError as exc:
        raise CheckFailedError(f"git push of the shared findings ({notes.REF}) to "
                               f"'{git_remote}' failed; see 'git push {git_remote} "
                               f"{notes.REF}' for git's own message") from exc
    return names
