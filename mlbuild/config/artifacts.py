"""Model artifacts declared next to the stage that writes them (`artifacts:` in
stages/<name>.yaml), compiled into dvc.yaml's own `artifacts:` section, which DVC, GTO and the
registry read (path, type, desc, labels, meta)."""

from __future__ import annotations

import re
from typing import Any

from mlbuild.errors import ConfigError, check_keys

ARTIFACT_KEYS = ("path", "type", "desc", "labels", "meta")
# GTO's (and so `dvc artifacts`') artifact name: letters, digits, '-', '_', '/', not at the ends
NAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?$")


def _out_paths(outs: list[Any]) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for o in outs]


def _check_one(name: Any, spec: Any, outs: list[str], where: str) -> dict[str, Any]:
    at = f"{where}.{name}"
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"{at}: invalid artifact name (letters, digits, '-', '_', '/'; "
                          "it must start and end with a letter or a digit)")
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: expected a mapping with 'path' (and type, desc, labels)")
    check_keys(spec, ARTIFACT_KEYS, at)
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{at}.path: required: the output file of this stage it names")
    if path not in outs:
        listed = ", ".join(outs) or "none"
        raise ConfigError(f"{at}.path: '{path}' is not an output of this stage (outs: {listed})")
    for key in ("type", "desc"):
        if key in spec and not isinstance(spec[key], str):
            raise ConfigError(f"{at}.{key}: expected a string")
    labels = spec.get("labels")
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(x, str) for x in labels)):
        raise ConfigError(f"{at}.labels: expected a list of strings")
    return {k: spec[k] for k in ARTIFACT_KEYS if k in spec}


def check_artifacts(value: Any, outs: list[Any], where: str) -> dict[str, dict[str, Any]]:
    """Validate a declaration's `artifacts:` block: name -> DVC's artifact fields."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of artifact name -> "
                          "{path, type, desc, labels}")
    paths = _out_paths(outs)
    return {name: _check_one(name, spec, paths, where) for name, spec in value.items()}


def collect(declared: list[tuple[str, dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    """dvc.yaml's `artifacts:` from every declaration's (source, artifacts); one name, one
    declaration."""
    found: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for source, artifacts in declared:
        for name, spec in artifacts.items():
            if name in found:
                raise ConfigError(f"{source}.artifacts.{name}: already declared in "
                                  f"{owner[name]}; an artifact name is unique in a project")
            found[name], owner[name] = spec, source
    return found
