"""`mlbuild exp push/pull`: experiments shared with the team, as `dvc exp push/pull` share
them: their refs through a git remote, their outputs through the DVC remote, every pulled
object checked against its hash."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.dvcfmt.yamlio import parse_yaml
from mlbuild.errors import ConfigError, IntegrityError, UsageError
from mlbuild.experiments.refs import NAMESPACE, ExpRef, list_refs, read_blobs
from mlbuild.files.layout import LOCK_FILE
from mlbuild.gitrepo import GitError, git
from mlbuild.store.cache import Cache


@dataclass
class Shared:
    """What a push or pull moved."""

    experiments: list[str]
    objects: int


def outputs(root: Path, exps: Iterable[ExpRef]) -> list[tuple[str, str]]:
    """(path, md5) of everything an experiment needs checked out, as `dvc exp push` sends
    it: the outputs its dvc.lock records and the data its .dvc files track."""
    found: list[tuple[str, str]] = []
    for exp in exps:
        pointers = [p for p in git(root, "ls-tree", "-r", "--name-only", "-z", exp.commit)
                    .decode().split("\0") if p.endswith(".dvc")]
        blobs = read_blobs(root, [f"{exp.commit}:{p}" for p in [LOCK_FILE, *pointers]])
        lock = _yaml(blobs[f"{exp.commit}:{LOCK_FILE}"])
        for raw in (lock.get("stages") or {}).values():
            found += list(LockEntry.parse(raw).out_md5s().items())
        for pointer in pointers:
            folder = pointer.rpartition("/")[0]
            found += [(f"{folder}/{o['path']}".lstrip("/"), str(o["md5"]))
                      for o in _yaml(blobs[f"{exp.commit}:{pointer}"]).get("outs") or []
                      if isinstance(o, dict) and o.get("md5") and o.get("path")]
    return found


def _yaml(blob: bytes | None) -> dict[str, Any]:
    """A committed YAML file's mapping; an unreadable one has nothing to share."""
    try:
        data = parse_yaml(blob.decode(), "experiment file") if blob else {}
    except (ConfigError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _git_remote(root: Path, name: str) -> None:
    try:
        git(root, "remote", "get-url", name)
    except GitError as exc:
        raise UsageError(f"no git remote named '{name}' (see 'git remote -v')") from exc


def push(root: Path, git_remote: str, exps: list[ExpRef], dvc_remote: str | None) -> Shared:
    """Send the experiments' outputs to the DVC remote, then their refs to the git remote
    (outputs first: a ref on the remote always has its data)."""
    from mlbuild.store.transfer import complete_push, expand

    _git_remote(root, git_remote)
    cache = Cache(root)
    needed = expand(cache, outputs(root, exps))
    missing = sorted(f"{path} (md5 {md5})" for md5, path in needed.items()
                     if not cache.has_md5(md5))
    if missing:
        raise IntegrityError(f"{len(missing)} output(s) of these experiments are not in the "
                             f"local cache, nothing was pushed: {', '.join(missing[:3])}")
    sent = complete_push(root, cache, needed, dvc_remote)
    try:
        git(root, "push", "-q", git_remote, *(f"{e.ref}:{e.ref}" for e in exps))
    except GitError as exc:
        raise UsageError(f"git push to '{git_remote}' was refused (an experiment of the same "
                         "name holds other results there?)") from exc
    return Shared([e.name for e in exps], sent)


def pull(root: Path, git_remote: str, names: list[str], dvc_remote: str | None) -> Shared:
    """Fetch experiment refs (all, or the named ones) and their outputs, verified."""
    from mlbuild.store.remotes import fetch_objects
    from mlbuild.store.transfer import check, expand

    _git_remote(root, git_remote)
    before = {e.ref: e.commit for e in list_refs(root)}
    spec = [f"+{NAMESPACE}/*:{NAMESPACE}/*"] if not names else []
    try:
        git(root, "fetch", "-q", git_remote, *spec)
        for name in names:
            git(root, "fetch", "-q", git_remote, *_matching(root, git_remote, name))
    except GitError as exc:
        raise UsageError(f"git fetch from '{git_remote}' failed") from exc
    exps = [e for e in list_refs(root) if before.get(e.ref) != e.commit]
    cache = Cache(root)
    pairs = outputs(root, exps)
    wanted = sorted({m for _, m in pairs if not cache.has_md5(m)})
    if wanted:  # directories come with their files
        fetch_objects(root, wanted, dvc_remote)
    needed = expand(cache, pairs)
    bad = check(cache, needed)
    if bad:
        raise IntegrityError(f"{len(bad)} pulled object(s) failed their hash check and were "
                             f"removed: {', '.join(needed[b.expected] for b in bad[:3])}")
    lost = sorted(f"{path} (md5 {md5})" for md5, path in needed.items()
                  if not cache.has_md5(md5))
    if lost:
        raise IntegrityError(f"the experiments' refs were fetched, but {len(lost)} of their "
                             f"outputs are not on the DVC remote: {', '.join(lost[:3])}; "
                             "push them from the machine that made them ('mlbuild exp push')")
    return Shared([e.name for e in exps], len(needed))


def _matching(root: Path, git_remote: str, name: str) -> list[str]:
    """The refspecs of the remote's experiments called *name*."""
    out = git(root, "ls-remote", git_remote, f"{NAMESPACE}/*").decode()
    refs = [line.split("\t")[1] for line in out.splitlines()
            if "\t" in line and line.rsplit("/", 1)[-1] == name]
    if not refs:
        raise UsageError(f"git remote '{git_remote}' has no experiment named '{name}'")
    return [f"+{r}:{r}" for r in refs]
