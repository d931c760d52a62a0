"""The plain dvc.yaml shapes that DVC's schema (dvc/schema.py) is known to accept, checked
without importing DVC.

Importing DVC's schema and validating a pipeline with it costs about 0.4 s (voluptuous
compiles a schema per stage), on every change of dvc.yaml: most of a small cold build. Most
files use only plain shapes: a command, lists of paths, params files, simple output flags.
For those this check answers alone; anything else (templating, matrix, plots with
properties, unknown keys, wrong types) goes to DVC's schema, which names the problem.
tests/test_fast_paths.py keeps this a strict subset of what DVC accepts.
"""

from __future__ import annotations

from typing import Any

_OUT_FLAGS = {"cache": bool, "persist": bool, "push": bool, "remote": str, "desc": str}
_LISTS = ("deps", "outs", "metrics", "plots", "params")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _plain_out(item: Any) -> bool:
    """'path', or {'path': {cache: false, persist: true, ...}} with known flags only."""
    if isinstance(item, str):
        return True
    if not isinstance(item, dict) or len(item) != 1:
        return False
    ((path, flags),) = item.items()
    return isinstance(path, str) and isinstance(flags, dict) and all(
        isinstance(k, str) and k in _OUT_FLAGS and type(v) is _OUT_FLAGS[k]
        for k, v in flags.items())


def _plain_item(key: str, item: Any) -> bool:
    if key in {"deps", "plots"}:
        return isinstance(item, str)
    if key == "params":  # a key, or {file: [keys]}: DVC accepts any mapping here
        return isinstance(item, str | dict)
    return _plain_out(item)  # outs, metrics


def _plain_stage(stage: Any) -> bool:
    if not isinstance(stage, dict) or not isinstance(stage.get("cmd"), str | list):
        return False
    for key, value in stage.items():
        if key in _LISTS:
            if not isinstance(value, list) or not all(_plain_item(key, v) for v in value):
                return False
        elif key in ("wdir", "desc"):
            if not isinstance(value, str):
                return False
        elif key in ("frozen", "always_changed"):
            if type(value) is not bool:
                return False
        elif key not in ("cmd", "meta"):
            return False
    return True


def accepted_plainly(doc: Any) -> bool:
    """True when *doc* (a parsed dvc.yaml) uses only shapes DVC's schema accepts; False
    means "ask DVC's schema", not "refused"."""
    if not isinstance(doc, dict) or not isinstance(doc.get("stages", {}), dict):
        return False
    for key, value in doc.items():
        if key in ("params", "metrics", "plots"):
            if not _is_str_list(value):
                return False
        elif key != "stages":
            return False
    stages = doc.get("stages", {})
    return all(isinstance(name, str) and _plain_stage(s) for name, s in stages.items())
