"""DVC's templating (vars, interpolation, foreach, matrix), through DVC itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError


def _repo(root: Path) -> Any:
    from dvc.repo import Repo

    return Repo(str(root))


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
