"""`mlbuild exp apply`: one experiment's results become the workspace's, without a rebuild.

As `dvc exp apply` (dvc/repo/experiments/apply.py) does, the files the experiment changed on
its baseline (params.yaml, dvc.lock, metrics, .dvc files) are written into the workspace and
its outputs are checked out of the cache; DVC's `refs/exps/exec/EXEC_APPLY` then names it.
In a Hydra project the experiment's params also go into configs/, so that the next `mlbuild
run` composes the same params.yaml and nothing reruns.

An uncommitted change that this would overwrite (a file that differs from HEAD and from the
experiment, or an output whose content the cache does not hold) stops apply before anything
is written, unless forced: that is DVC 2's `exp apply --no-force`, where a change in the way
was a conflict. (DVC 3 overwrites and keeps the old workspace in a git stash.)
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.dvcfmt.yamlio import parse_yaml, write_atomic
from mlbuild.errors import ConfigError, IntegrityError, MlbuildError, UsageError
from mlbuild.experiments.refs import APPLIED, ExpRef, baseline, overrides_of, read_blobs, resolve
from mlbuild.files.layout import DVC_FILE, LOCK_FILE, PARAMS_FILE
from mlbuild.gitrepo import GitError, git


@dataclass
class Applied:
    """What apply wrote: the files, the outputs it checked out, the configs edited."""

    name: str
    commit: str
    files: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """Everything apply will do, worked out before anything is written."""

    files: dict[str, bytes | None]  # path -> new content (None: remove)
    configs: list[str]
    outputs: list[tuple[str, HashInfo]]  # to check out of the cache


def apply(root: Path, name: str, force: bool = False) -> Applied:
    """Make experiment *name*'s results the workspace's (see the module's docstring)."""
    from mlbuild.engine.workspace import project_lock

    exp = resolve(root, [name])[0]
    head = baseline(root)
    previous = _previous(root, head, exp)
    plan = _plan(root, head, exp, list(previous))
    if not force:
        _refuse_conflicts(root, head, exp, plan, previous)
    with project_lock(root):
        _write(root, plan)
        outputs = _checkout(root, plan.outputs)
        git(root, "update-ref", APPLIED, exp.commit)
    return Applied(exp.name, exp.commit, sorted(plan.files), outputs, plan.configs)


def _previous(root: Path, head: str, exp: ExpRef) -> dict[str, bytes | None]:
    """What the experiment applied last (DVC's EXEC_APPLY) wrote: applying another one puts
    those files back as well, and they are not the user's changes."""
    try:
        commit = git(root, "rev-parse", "--verify", "--quiet", f"{APPLIED}^{{commit}}")
    except GitError:
        return {}
    last = ExpRef("", "(applied before)", commit.decode().strip())
    if last.commit == exp.commit:
        return {}
    try:
        return _plan(root, head, last).files
    except MlbuildError:  # its params no longer fit configs/: nothing of it to recognise
        return {}


def _changed(root: Path, head: str, commit: str) -> list[str]:
    """The paths that differ between the baseline and the experiment's commit."""
    out = git(root, "diff-tree", "-r", "-z", "--no-renames", "--name-only", head, commit)
    return [p for p in out.decode().split("\0") if p]


def _plan(root: Path, head: str, exp: ExpRef, also: list[str] | None = None) -> _Plan:
    """The files to write (the experiment's changes on HEAD, its configs/ edits, and *also*
    as the experiment has them) and the outputs to check out."""
    paths = sorted(set(_changed(root, head, exp.commit)) | set(also or []))
    blobs = read_blobs(root, [f"{exp.commit}:{p}" for p in [*paths, PARAMS_FILE, LOCK_FILE,
                                                               DVC_FILE]])
    files = {p: blobs[f"{exp.commit}:{p}"] for p in paths}
    configs = _configs(root, exp, blobs[f"{exp.commit}:{PARAMS_FILE}"])
    files.update(configs)
    dvcyaml, lock = blobs[f"{exp.commit}:{DVC_FILE}"], blobs[f"{exp.commit}:{LOCK_FILE}"]
    outputs = _lock_outputs(root, dvcyaml, lock) + _pointer_outputs(files)
    return _Plan(files, sorted(configs), outputs)


def _yaml(blob: bytes | None, what: str) -> dict[str, Any]:
    try:
        data = parse_yaml(blob.decode("utf-8"), what) if blob else {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: not UTF-8 text") from exc
    return data if isinstance(data, dict) else {}


def _configs(root: Path, exp: ExpRef, params: bytes | None) -> dict[str, bytes | None]:
    """configs/ edited so that it composes to the experiment's params.yaml (Hydra projects):
    the edits are made on a copy of the experiment's configs/, then compared with HEAD's."""
    from mlbuild.config.compose import CONFIG_DIR, CONFIG_NAME
    from mlbuild.config.writeback import write_back

    listing = git(root, "ls-tree", "-r", "-z", "--name-only", exp.commit, "--", f"{CONFIG_DIR}/")
    names = [p for p in listing.decode().split("\0") if p]
    if f"{CONFIG_DIR}/{CONFIG_NAME}.yaml" not in names or params is None:
        return {}
    blobs = read_blobs(root, [f"{exp.commit}:{p}" for p in names])
    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-apply-"))
    try:
        for rel in names:
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            (scratch / rel).write_bytes(blobs[f"{exp.commit}:{rel}"] or b"")
        overrides = overrides_of(root, exp.commit) or []
        try:
            edited = write_back(scratch, overrides, _yaml(params, f"{exp.name}:{PARAMS_FILE}"))
        except ConfigError as exc:
            raise ConfigError(f"exp apply {exp.name}: {exc}") from exc
        return {rel: (scratch / rel).read_bytes() for rel in edited}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _lock_outputs(root: Path, dvcyaml: bytes | None, lock: bytes | None
                  ) -> list[tuple[str, HashInfo]]:
    """The cached outputs the experiment's dvc.lock records (cache: false ones are in git)."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline

    if lock is None or dvcyaml is None:
        return []
    pipeline = load_pipeline(root, dvcyaml.decode("utf-8"))
    uncached = {o.path for s in pipeline.stages.values() for o in s.outs if not o.cache}
    found = []
    for raw in (_yaml(lock, LOCK_FILE).get("stages") or {}).values():
        if isinstance(raw, dict):
            found += [(p, i) for p, i in LockEntry.parse(raw).outs.items()
                      if i is not None and p not in uncached]
    return found


def _pointer_outputs(files: dict[str, bytes | None]) -> list[tuple[str, HashInfo]]:
    """The data of the .dvc files the experiment changed."""
    found = []
    for path, blob in files.items():
        if not path.endswith(".dvc") or blob is None:
            continue
        folder = path.rpartition("/")[0]
        for out in _yaml(blob, path).get("outs") or []:
            if isinstance(out, dict) and out.get("md5") and out.get("path"):
                found.append((f"{folder}/{out['path']}".lstrip("/"), HashInfo.from_entry(out)))
    return found


def _differs(root: Path, rel: str, content: bytes | None) -> bool:
    path = root / rel
    if not path.is_file():
        return content is not None or path.exists()
    return content is None or path.read_bytes() != content


def _refuse_conflicts(root: Path, head: str, exp: ExpRef, plan: _Plan,
                      previous: dict[str, bytes | None]) -> None:
    """Uncommitted changes apply would overwrite are bad input (nothing written yet): a file
    that is neither HEAD's, nor the experiment's, nor what the last apply wrote."""
    base = read_blobs(root, [f"{head}:{p}" for p in plan.files])
    lost = [p for p, new in plan.files.items()
            if _differs(root, p, base[f"{head}:{p}"]) and _differs(root, p, new)
            and (p not in previous or _differs(root, p, previous[p]))]
    lost += _uncached_outputs(root, plan.outputs)
    if lost:
        shown = ", ".join(sorted(lost)[:4]) + (", ..." if len(lost) > 4 else "")
        raise UsageError(f"exp apply {exp.name}: uncommitted changes would be overwritten "
                         f"({shown}); commit or stash them, or pass --force")


def _uncached_outputs(root: Path, outputs: list[tuple[str, HashInfo]]) -> list[str]:
    """Workspace outputs the experiment replaces whose content the cache does not hold."""
    hasher, cache = _hashing(root)
    lost = []
    for path, info in outputs:
        current = hasher.path(path)
        if current is not None and current.md5 != info.md5 and not cache.complete(current):
            lost.append(f"{path} (not in the cache)")
    return lost


def _hashing(root: Path) -> tuple[Any, Any]:
    from mlbuild.files.layout import state_dir
    from mlbuild.store.cache import Cache
    from mlbuild.store.hashing import Hasher
    from mlbuild.store.statcache import StatCache

    return Hasher(root, StatCache(state_dir(root) / "stat-cache.json")), Cache(root)


def _write(root: Path, plan: _Plan) -> None:
    """Check the outputs are at hand, then write the experiment's files."""
    _, cache = _hashing(root)
    missing = [f"{p} (md5 {i.md5})" for p, i in plan.outputs if not cache.complete(i)]
    if missing:
        raise IntegrityError(f"{len(missing)} output(s) of the experiment are not in the "
                             f"cache, nothing was applied: {', '.join(missing[:3])}; "
                             "fetch them with 'mlbuild exp pull' (or 'mlbuild pull')")
    for rel, content in plan.files.items():
        path = root / rel
        if content is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, content)


def _checkout(root: Path, outputs: list[tuple[str, HashInfo]]) -> list[str]:
    """Check out of the cache the outputs that differ from the experiment's; their paths."""
    hasher, cache = _hashing(root)
    done = []
    for path, info in outputs:
        current = hasher.path(path)
        if current is None or current.md5 != info.md5:
            cache.checkout(info, root / path)
            done.append(path)
    hasher.cache.save()
    return done
