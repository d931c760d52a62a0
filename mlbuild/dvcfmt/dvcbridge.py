"""DVC's templating (vars, interpolation, foreach, matrix), through DVC itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError
from mlbuild.pipeline.model import WARNINGS_KEY


def _repo(root: Path) -> Any:
    from dvc.repo import Repo

    return share_lock(Repo(str(root)), root)


def share_lock(repo: Any, root: Path) -> Any:
    """While this process holds the project's DVC lock, DVC's Repo must not take it again
    (flock would refuse a second open file in the same process): it works under ours."""
    from mlbuild.dvcfmt.repolock import held

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
            resolver = DataResolver(repo, str(root), raw)
            resolved = resolver.resolve()
        finally:
            repo.close()
    except DvcException as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"dvc.yaml: {message}") from exc
    return {**{k: v for k, v in raw.items() if k not in ("stages", "vars")},
            "stages": _plain(resolved.get("stages", {})),
            WARNINGS_KEY: _shell_warnings(raw, resolver.context)}


def _shell_warnings(raw: dict[str, Any], context: Any) -> dict[str, list[str]]:
    """Stage (as named in dvc.yaml) -> warnings about values its cmd hands the shell."""
    from mlbuild.dvcfmt.cmdquote import shell_warnings

    found: dict[str, list[str]] = {}
    for name, definition in (raw.get("stages") or {}).items():
        body = definition.get("do", definition) if isinstance(definition, dict) else {}
        cmd = body.get("cmd") if isinstance(body, dict) else None
        lines = [cmd] if isinstance(cmd, str) else cmd if isinstance(cmd, list) else []
        warnings = [w for line in lines if isinstance(line, str)
                    for w in shell_warnings(line, lambda e: context.select(e, unwrap=True))]
        if warnings:
            found[str(name)] = warnings
    return found


def schema_problems(doc: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """Where and why DVC's own dvc.yaml schema (dvc/schema.py) refuses *doc*: (key path,
    message) pairs; none when DVC accepts it."""
    from mlbuild.dvcfmt.plainschema import accepted_plainly

    if accepted_plainly(doc):  # known accepted: spare the import of DVC and its validation
        return []
    from dvc.schema import COMPILED_MULTI_STAGE_SCHEMA
    from voluptuous import MultipleInvalid

    try:
        COMPILED_MULTI_STAGE_SCHEMA(doc)
    except MultipleInvalid as exc:
        return [(list(err.path), err.error_message) for err in exc.errors]
    return []


def _plain(node: Any) -> Any:
    """Convert DVC's resolved containers to plain JSON-able Python values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    return node
