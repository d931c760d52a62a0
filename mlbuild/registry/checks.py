"""The preconditions of registering a version and the evidence checks of a gate that need the
rest of mlbuild: a clean, current commit, the artifact stored locally and on the remote, and a
passed `mlbuild verify` in the run history."""

from __future__ import annotations

from pathlib import Path

from mlbuild.errors import CheckFailedError, UsageError
from mlbuild.gitrepo import git
from mlbuild.registry.evidence import Evidence
from mlbuild.registry.gate import Check
from mlbuild.store.cache import Cache


def require_clean(root: Path) -> None:
    """A version is a commit: uncommitted changes to tracked files are refused."""
    out = git(root, "status", "--porcelain", "--untracked-files=no").decode()
    changed = [line[3:] for line in out.splitlines() if line.strip()]
    if changed:
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise UsageError(f"the working tree has uncommitted changes ({shown}); commit them "
                         "first: a registered version is a commit")


def head(root: Path) -> str:
    """The commit HEAD points at."""
    try:
        return git(root, "rev-parse", "--verify", "HEAD^{commit}").decode().strip()
    except Exception as exc:
        raise UsageError("the repository has no commit yet; commit the project first") from exc


def require_current(root: Path, stage: str, name: str) -> None:
    """dvc.lock must be current for the stage that writes the model (and its upstream), with
    the params the commit holds: a model built with a Hydra override is registered as built,
    not measured against a recomposition of configs/."""
    from mlbuild.engine import session
    from mlbuild.engine.workspace import open_workspace

    ws = open_workspace(root)
    try:
        steps = session.plan(ws, session.planned_order(ws, [stage])).steps
    finally:
        ws.save_state()
    stale = [s for s in steps if s.stale and not s.frozen]
    if stale:
        first = stale[0]
        why = first.reasons[0].detail if first.reasons else "stale"
        raise UsageError(f"model '{name}': dvc.lock is stale for stage '{first.stage}' "
                         f"({why}); run 'mlbuild run' and commit dvc.lock first")


def needed(root: Path, evidence: Evidence) -> dict[str, str]:
    """md5 -> path of every object the artifact needs (a directory's files included)."""
    from mlbuild.store.transfer import expand

    return expand(Cache(root), [(evidence.path, evidence.info.md5)])


def on_remote(root: Path, evidence: Evidence) -> set[str]:
    """The artifact's objects the default DVC remote lacks."""
    from mlbuild.store.remotes import missing_on_remote

    return missing_on_remote(root, set(needed(root, evidence)), None)


def require_stored(root: Path, evidence: Evidence) -> None:
    """The artifact is in the local cache and on the remote: anyone can fetch the version."""
    if not Cache(root).complete(evidence.info):
        raise CheckFailedError(f"model '{evidence.name}': {evidence.path} "
                               f"({evidence.info.md5}) is not in the local cache; run "
                               "'mlbuild pull' or 'mlbuild run' first")
    if on_remote(root, evidence):
        raise CheckFailedError(f"model '{evidence.name}': the DVC remote lacks {evidence.path} "
                               f"({evidence.info.md5}); run 'mlbuild push' first, so that "
                               "the registered version can be fetched by anyone")


def remote_check(root: Path, evidence: Evidence) -> Check:
    """The gate's check that the artifact can be fetched from the remote."""
    missing = on_remote(root, evidence)
    if missing:
        return Check("remote", False, f"the DVC remote lacks {len(missing)} object(s) of "
                     f"{evidence.path} ('mlbuild push' sends them)")
    return Check("remote", True, f"{evidence.path} ({evidence.info.md5}) is on the DVC remote")


def _shared_verify(root: Path, evidence: Evidence) -> Check | None:
    """A passed verify of the commit that another clone (CI, a colleague) shared as a git
    note, covering the artifact's stage."""
    from mlbuild.history import notes

    for note in reversed(notes.read(root)):
        stages = note.doc.get("stages") or {}
        if note.kind == "verify" and note.commit == evidence.commit and note.doc.get("ok") \
                and (not note.doc.get("targets") or evidence.stage in stages):
            return Check("verify", True, f"verify passed on {evidence.commit[:12]} "
                         f"({note.who}, shared)")
    return None


def verify_check(root: Path, evidence: Evidence) -> Check:
    """`mlbuild verify` passed for the version's commit, as the run history records it."""
    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(root)
    try:
        run = index.latest("verify", evidence.commit)
    finally:
        index.close()
    if run is None or run.dirty:
        shared = _shared_verify(root, evidence)
        if shared is not None:
            return shared
        return Check("verify", False, f"no passed 'mlbuild verify' of {evidence.commit[:12]} "
                     "in the run history or the shared findings (run it on that commit, or "
                     "promote with --verify)")
    covered = not run.args or any(s.stage == evidence.stage for s in run.stages)
    if not covered:
        return Check("verify", False, f"the verify of {evidence.commit[:12]} ({run.id[:12]}) "
                     f"did not cover stage '{evidence.stage}'")
    return Check("verify", True, f"verify {run.id[:12]} passed on {evidence.commit[:12]}")
