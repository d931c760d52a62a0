"""Load dvc.yaml; templated files (vars, ${}, foreach, matrix) are resolved by DVC's own parser.

The resolution is cached under .dvc/tmp/mlbuild keyed on the bytes of dvc.yaml and the
files its variables come from, so a no-op build does not import DVC.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import locate, parse_yaml, write_memo
from mlbuild.errors import ConfigError
from mlbuild.files.layout import DVC_FILE, PARAMS_FILE, state_dir
from mlbuild.pipeline.model import (
    SYNTAX_NAME_CHARS,
    WARNINGS_KEY,
    Pipeline,
    build_pipeline,
    check_stage_name,
)

TEMPLATE_KEYS = ("vars", "foreach", "matrix")


def _is_templated(node: Any) -> bool:
    if isinstance(node, dict):
        return any(k in TEMPLATE_KEYS or _is_templated(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_is_templated(v) for v in node)
    return isinstance(node, str) and "${" in node


def _vars_files(node: Any, wdir: str = ".") -> set[str]:
    """Files named in any 'vars' section; a stage's own vars are relative to its wdir."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("wdir"), str):
            wdir = posixpath.normpath(posixpath.join(wdir, node["wdir"]))
        for key, value in node.items():
            if key == "vars" and isinstance(value, list):
                found.update(posixpath.normpath(posixpath.join(wdir, v.split(":", 1)[0]))
                             for v in value if isinstance(v, str))
            else:
                found |= _vars_files(value, wdir)
    elif isinstance(node, list):
        for value in node:
            found |= _vars_files(value, wdir)
    return found


def _cache_key(root: Path, text: str, raw: dict[str, Any]) -> str:
    digest = hashlib.md5(text.encode(), usedforsecurity=False)
    for name in sorted(_vars_files(raw) | {PARAMS_FILE}):
        path = root / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _resolve_with_dvc(root: Path, raw: dict[str, Any]) -> dict[str, Any]:
    from mlbuild.dvcfmt import dvcbridge

    return dvcbridge.resolve_dvcyaml(root, raw)


def load_raw(root: Path, text: str | None = None) -> tuple[str, dict[str, Any]]:
    """Read dvc.yaml (or the given text for it) as text and mapping."""
    path = root / DVC_FILE
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{DVC_FILE}: not found in {root}; declare stages in stages/<name>.yaml or write "
            "a dvc.yaml"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{DVC_FILE}: not a UTF-8 text file ({exc.reason})") from exc
    raw = parse_yaml(text, DVC_FILE) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{DVC_FILE}: expected a mapping with a 'stages' key")
    return text, raw


def _check_parsed(root: Path, raw: Any) -> None:
    """Validate a freshly parsed dvc.yaml: mlbuild's own checks first (they suggest the key
    meant), then DVC's schema, whose refusal would break every DVC command."""
    if not isinstance(raw, dict):
        return  # the caller says what is wrong
    check_stage_names(raw, DVC_FILE, lambda: load_raw(root)[0])
    if not _is_templated(raw):
        build_pipeline(root, raw)
    from mlbuild.dvcfmt.schema import check_dvcyaml

    check_dvcyaml(raw, lambda: (root / DVC_FILE).read_text(encoding="utf-8"))


def _load_memo(root: Path) -> dict[str, Any] | None:
    """dvc.yaml through the parsed-file memo (None when it cannot be used)."""
    from mlbuild.dvcfmt.memo import load_yaml_memo

    path = root / DVC_FILE
    if not path.is_file():
        return None
    raw = load_yaml_memo(path, DVC_FILE, state_dir(root) / "parsed",
                         check=lambda data: _check_parsed(root, data)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{DVC_FILE}: expected a mapping with a 'stages' key")
    return raw


def resolved_dvcyaml(root: Path, text: str | None = None) -> dict[str, Any]:
    """The dvc.yaml mapping with all templating expanded."""
    raw = _load_memo(root) if text is None else None
    if raw is not None and not _is_templated(raw):
        check_stage_names(raw, DVC_FILE, lambda: load_raw(root)[0])
        return raw
    text, raw = load_raw(root, text)
    check_stage_names(raw, DVC_FILE, lambda: text)
    if not _is_templated(raw):
        return raw
    key = _cache_key(root, text, raw)
    cache_file = state_dir(root) / "resolved.json"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return dict(cached["data"])
    except (OSError, ValueError):
        pass
    data = _resolve_with_dvc(root, raw)
    # not sorted: stage order is dvc.yaml order, the planner's tie-break
    write_memo(cache_file, json.dumps({"key": key, "data": data}))
    return data


def load_pipeline(root: Path, text: str | None = None) -> Pipeline:
    """Load and validate the project's pipeline (from *text* instead of dvc.yaml if given)."""
    data = dict(resolved_dvcyaml(root, text))
    warnings: dict[str, list[str]] = data.pop(WARNINGS_KEY, None) or {}
    pipeline = build_pipeline(root, data)
    for name, found in warnings.items():
        for member, stage in pipeline.stages.items():
            if member == name or member.startswith(name + "@"):
                pipeline.stages[member] = replace(
                    stage, warnings=tuple(f"stage '{member}': {w}" for w in found))
    return pipeline


def check_stage_names(raw: Any, where: str, text: Callable[[], str] | None = None) -> None:
    """Check the stage names of an unresolved dvc.yaml (foreach members get their '@' later);
    *text* gives the file's text, read only to say on which line a bad name is."""
    stages = raw.get("stages") if isinstance(raw, dict) else None
    for name in stages if isinstance(stages, dict) else ():
        if SYNTAX_NAME_CHARS & set(str(name)) and text is not None:
            where += locate(text(), ["stages", name], key_itself=True)
        check_stage_name(str(name), where, hand_written=True)
