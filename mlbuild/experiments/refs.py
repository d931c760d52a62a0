"""Experiments stored as DVC stores them: a commit on the baseline under `refs/exps/`.

The layout is DVC's (`dvc/repo/experiments/refs.py`): `refs/exps/<sha[:2]>/<sha[2:]>/<name>`,
the commit's parent is the baseline and its tree is the baseline's with the experiment's
changes to tracked files (params.yaml, dvc.lock, metrics), as `git add -u` in DVC's executor
makes it. So `dvc exp show/apply/branch` see mlbuild's experiments and mlbuild sees DVC's.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError, did_you_mean
from mlbuild.gitrepo import GitError, git, read_objects

NAMESPACE = "refs/exps"
APPLIED = f"{NAMESPACE}/exec/EXEC_APPLY"  # DVC's record of the experiment last applied
MESSAGE = "dvc: commit experiment {}"  # DVC's message for an experiment commit
# A git trailer under DVC's message: the Hydra overrides the experiment was built with, which
# `exp apply` writes into configs/ (DVC reads only the first line)
OVERRIDES_TRAILER = "Mlbuild-Overrides"
# DVC's own bookkeeping under refs/exps (stashes, queue, executor refs): not experiments
SKIP = ("apply", "celery", "exec", "temp", "stash")


@dataclass(frozen=True)
class ExpRef:
    """One experiment: its baseline commit, its name and its own commit."""

    baseline: str
    name: str
    commit: str = ""

    @property
    def ref(self) -> str:
        """The full ref name, as DVC writes it."""
        return f"{NAMESPACE}/{self.baseline[:2]}/{self.baseline[2:]}/{self.name}"


def baseline(root: Path) -> str:
    """The commit experiments start from (HEAD)."""
    try:
        return git(root, "rev-parse", "--verify", "HEAD^{commit}").decode().strip()
    except GitError as exc:
        raise UsageError("experiments need a git repository with at least one commit: "
                         "each experiment is a commit on it") from exc


def exp_hash(lock_stages: dict[str, Any]) -> str:
    """A digest of the experiment's lock data (DVC names an unnamed experiment exp-<5 hex>)."""
    text = json.dumps(lock_stages, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def message(digest: str, overrides: list[str]) -> str:
    """The experiment commit's message: DVC's, with the overrides as a trailer."""
    return f"{MESSAGE.format(digest)}\n\n{OVERRIDES_TRAILER}: {json.dumps(overrides)}\n"


def overrides_of(root: Path, commit: str) -> list[str] | None:
    """The overrides an experiment commit records (None: made by DVC or an older mlbuild)."""
    text = git(root, "cat-file", "commit", commit).decode("utf-8", errors="replace")
    for line in reversed(text.splitlines()):
        if line.startswith(f"{OVERRIDES_TRAILER}:"):
            try:
                found = json.loads(line.partition(":")[2])
            except ValueError:
                return None
            if isinstance(found, list) and all(isinstance(o, str) for o in found):
                return found
    return None


def check_name(root: Path, name: str) -> None:
    """Refuse a name git (or DVC, which forbids '/') would not take as the last ref part."""
    try:
        git(root, "check-ref-format", f"{NAMESPACE}/00/0/{name}")
    except GitError:
        name = ""
    if not name or "/" in name:
        raise UsageError(f"invalid experiment name '{name}': use letters, digits, '-', '_' "
                         "or '.', as for a git branch, without '/'")


def list_refs(root: Path, baseline: str | None = None) -> list[ExpRef]:
    """Every experiment in the repository (of one baseline, if given), oldest first."""
    out = git(root, "for-each-ref", "--sort=committerdate",
              "--format=%(refname) %(objectname)", f"{NAMESPACE}/").decode()
    found = []
    for line in out.splitlines():
        ref, _, commit = line.partition(" ")
        parts = ref.split("/")
        if len(parts) != 5 or parts[2] in SKIP:
            continue
        sha = parts[2] + parts[3]
        if baseline is None or sha == baseline:
            found.append(ExpRef(sha, parts[4], commit))
    return found


def resolve(root: Path, names: Iterable[str], baseline: str | None = None) -> list[ExpRef]:
    """The experiments named (by name, full ref or commit prefix); unknown names are an error."""
    known = list_refs(root, baseline)
    picked = []
    for name in names:
        match = [e for e in known if name in (e.name, e.ref) or
                 (len(name) >= 7 and e.commit.startswith(name))]
        if not match:
            raise UsageError(f"no experiment named '{name}'"
                             f"{did_you_mean(name, [e.name for e in known])}")
        picked.append(match[-1])
    return picked


def save(root: Path, baseline: str, workdir: Path, name: str, message: str,
         extra: Iterable[str] = ()) -> ExpRef:
    """Commit *workdir*'s changes to tracked files (plus *extra* paths) on *baseline* and point
    the experiment's ref at it. An existing ref of that name is replaced only by a commit of
    the same tree (a re-run that gave the same result)."""
    fd, index = tempfile.mkstemp(prefix="mlbuild-exp-index-")
    os.close(fd)
    env = {"GIT_INDEX_FILE": index}
    try:
        git(root, "read-tree", baseline, env=env)
        tree_args = ["--work-tree", str(workdir)]
        git(root, *tree_args, "add", "-u", env=env)
        present = [p for p in extra if (workdir / p).is_file()]
        if present:
            git(root, *tree_args, "add", "--", *present, env=env)
        tree = git(root, "write-tree", env=env).decode().strip()
    finally:
        Path(index).unlink(missing_ok=True)
    exp = ExpRef(baseline, name)
    old = _current(root, exp.ref)
    if old is not None and _tree(root, old) == tree:
        return ExpRef(baseline, name, old)
    commit = git(root, "commit-tree", tree, "-p", baseline, feed=message.encode(),
                 env=_identity(root)).decode().strip()
    git(root, "update-ref", exp.ref, commit, old or "")
    return ExpRef(baseline, name, commit)


def _current(root: Path, ref: str) -> str | None:
    try:
        return git(root, "rev-parse", "--verify", "--quiet", ref).decode().strip() or None
    except GitError:
        return None


def _tree(root: Path, commit: str) -> str:
    return git(root, "rev-parse", f"{commit}^{{tree}}").decode().strip()


def _identity(root: Path) -> dict[str, str]:
    """A committer for the experiment commit when git has none configured (CI machines)."""
    try:
        git(root, "var", "GIT_COMMITTER_IDENT")
        return {}
    except GitError:
        return {"GIT_AUTHOR_NAME": "mlbuild", "GIT_AUTHOR_EMAIL": "mlbuild@localhost",
                "GIT_COMMITTER_NAME": "mlbuild", "GIT_COMMITTER_EMAIL": "mlbuild@localhost"}


def branch(root: Path, exp: ExpRef, name: str) -> None:
    """Create git branch *name* at the experiment's commit (an existing branch is refused)."""
    try:
        git(root, "check-ref-format", "--branch", name)
    except GitError as exc:
        raise UsageError(f"'{name}' is not a valid git branch name") from exc
    try:
        git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}")
    except GitError:
        git(root, "branch", name, exp.commit)
        return
    raise UsageError(f"branch '{name}' already exists; choose another name")


def remove(root: Path, exps: Iterable[ExpRef]) -> None:
    """Delete the experiments' refs (their commits go with git's next gc)."""
    for exp in exps:
        git(root, "update-ref", "-d", exp.ref)


def read_blobs(root: Path, specs: list[str]) -> dict[str, bytes | None]:
    """`<commit>:<path>` -> the file's bytes (None when absent), in one `git cat-file`."""
    return read_objects(root, specs)
