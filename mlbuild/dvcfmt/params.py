"""Reading param values from params files (YAML, JSON, TOML) as DVC records them."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import parse_yaml
from mlbuild.errors import ConfigError, did_you_mean_key
from mlbuild.pipeline.model import ParamsDep, Stage

_MISSING = object()


def _position(exc: ValueError) -> str:
    """':line:column' of a JSON or TOML syntax error (TOML says it only in its message)."""
    if isinstance(exc, json.JSONDecodeError):
        return f":{exc.lineno}:{exc.colno}"
    found = re.search(r"at line (\d+), column (\d+)", str(exc))
    return f":{found.group(1)}:{found.group(2)}" if found else ""


class ParamsReader:
    """Reads each params file once per build."""

    def __init__(self, root: Path, pending: dict[str, str] | None = None) -> None:
        self.root = root
        self.pending = pending or {}  # relpath -> text not yet written (dry runs)
        self._files: dict[str, dict[str, Any]] = {}

    def file(self, relpath: str) -> dict[str, Any]:
        """The parsed mapping of a params file."""
        if relpath not in self._files:
            self._files[relpath] = self._load(relpath)
        return self._files[relpath]

    def _load(self, relpath: str) -> dict[str, Any]:
        path = self.root / relpath
        suffix = path.suffix.lower()
        if relpath not in self.pending and suffix not in (".json", ".toml") and path.is_file():
            from mlbuild.dvcfmt.memo import load_yaml_memo
            from mlbuild.files.layout import state_dir

            data = load_yaml_memo(path, relpath, state_dir(self.root) / "parsed")
            return self._mapping(data, relpath)
        try:
            text = self.pending.get(relpath) or path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"params file '{relpath}' does not exist") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{relpath}: not a UTF-8 text file ({exc.reason})") from exc
        try:
            if suffix == ".json":
                data = json.loads(text)
            elif suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = parse_yaml(text, relpath)
        except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise ConfigError(f"{relpath}{_position(exc)}: malformed params file: {exc}") from exc
        return self._mapping(data, relpath)

    @staticmethod
    def _mapping(data: Any, relpath: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(f"{relpath}: a params file must hold a mapping")
        return data

    def values(self, dep: ParamsDep, stage: str) -> dict[str, Any]:
        """Current values of the dep's keys (whole file when it names none)."""
        data = self.file(dep.path)
        if not dep.keys:
            return dict(data)
        out: dict[str, Any] = {}
        for key in sorted(dep.keys):
            value = lookup(data, key)
            if value is _MISSING:
                hint = did_you_mean_key(key, flat_keys(data))
                raise ConfigError(
                    f"stage '{stage}': param '{key}' is missing from '{dep.def_path}'{hint}; "
                    f"add it to {dep.def_path} or remove it from the stage's params"
                )
            out[key] = value
        return out


def check_declared(reader: ParamsReader, stages: Iterable[Stage], produced: Collection[str]
                   ) -> None:
    """Raise ConfigError before anything runs for a missing or malformed params file or a
    declared key it lacks; files a stage produces are only read once that stage has run."""
    for stage in stages:
        for dep in stage.params:
            path = dep.path
            while path and path not in produced:
                path = posixpath.dirname(path)
            if not path:
                reader.values(dep, stage.name)


def flat_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a nested mapping ('train', 'train.lr', ...)."""
    keys: list[str] = []
    for key, value in data.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += flat_keys(value, f"{prefix}{key}.")
    return keys


def lookup(data: dict[str, Any], dotted: str) -> Any:
    """A dotted key's value, or the module's missing marker."""
    if dotted in data:
        return data[dotted]
    node: Any = data
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node
