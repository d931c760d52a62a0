"""dvc.yaml checked against DVC's own schema (dvc/schema.py), so mlbuild never writes or runs
a pipeline file that every DVC command would then refuse."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import locate
from mlbuild.errors import ConfigError

REFUSED = "DVC's dvc.yaml schema refuses it"


def _dotted(keys: list[Any]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else f"{'.' if out else ''}{key}"
    return out


def _value_at(doc: Any, keys: list[Any]) -> Any:
    for key in keys:
        try:
            doc = doc[key]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _message(where: str, text: str, keys: list[Any], shown: list[Any], why: str,
             doc: Any) -> str:
    value = _value_at(doc, keys)
    got = f", got {value!r}" if why.startswith("expected") and value is not None else ""
    return f"{where}{locate(text, shown)}: {_dotted(shown)}: {why}{got} ({REFUSED})"


def check_dvcyaml(doc: dict[str, Any], text: Callable[[], str], where: str = "dvc.yaml") -> None:
    """Raise ConfigError naming file, line, key and DVC's reason when DVC refuses *doc*."""
    from mlbuild.dvcfmt import dvcbridge

    problems = dvcbridge.schema_problems(doc)
    if problems:
        keys, why = problems[0]
        raise ConfigError(_message(where, text(), keys, keys, why, doc))


def check_compiled(root: Path, doc: dict[str, Any], sources: dict[str, str]) -> None:
    """Check a generated dvc.yaml; a problem is reported in the declaration it came from
    (*sources*: stage name -> stages/<name>.yaml)."""
    from mlbuild.dvcfmt import dvcbridge

    problems = dvcbridge.schema_problems(doc)
    if not problems:
        return
    keys, why = problems[0]
    source = sources.get(str(keys[1])) if len(keys) > 1 and keys[0] == "stages" else None
    if source is None:
        raise ConfigError(_message("dvc.yaml (generated)", "", keys, keys, why, doc))
    text = (root / source).read_text(encoding="utf-8")
    raise ConfigError(_message(source, text, keys, keys[2:], why, doc))
