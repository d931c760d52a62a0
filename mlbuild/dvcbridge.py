"""The one module that imports DVC itself: templating, remotes and pulls go through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError, MlbuildError


def _repo(root: Path) -> Any:
    from dvc.repo import Repo

    return share_lock(Repo(str(root)), root)


def share_lock(repo: Any, root: Path) -> Any:
    """While this process holds the project's DVC lock, DVC's Repo must not take it again
    (flock would refuse a second open file in the same process): it works under ours."""
    from mlbuild.repolock import held

    if held(root) is not None:
        from dvc.lock import LockNoop

        repo.lock = LockNoop()
    return repo


def resolve_dvcyaml(root: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """Expand vars, ${} interpolation, foreach and matrix exactly as DVC does."""
    from dvc.exceptions import DvcException
    from dvc.parsing import DataResolver

    try:
        repo = _repo(root)
        try:
            resolved = DataResolver(repo, str(root), raw).resolve()
        finally:
            repo.close()
    except DvcException as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"dvc.yaml: {message}") from exc
    return {**{k: v for k, v in raw.items() if k not in ("stages", "vars")},
            "stages": _plain(resolved.get("stages", {}))}


def _plain(node: Any) -> Any:
    """Convert DVC's resolved containers to plain JSON-able Python values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    return node


def pull(root: Path, targets: list[str], remote: str | None = None) -> None:
    """Fetch and check out *targets* (.dvc files or outputs) from the DVC remote."""
    from dvc.exceptions import DvcException

    try:
        repo = _repo(root)
        try:
            repo.pull(targets=targets, remote=remote)
        finally:
            repo.close()
    except DvcException as exc:
        raise MlbuildError(f"pull failed: {' '.join(str(exc).split())}") from exc
