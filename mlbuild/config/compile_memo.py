"""The compiler's no-op answer: when nothing that compiling the declarations reads has changed
since the last compile, dvc.yaml and the environment record are current, and a no-op build
neither parses stages/*.yaml nor loads PyYAML.

What compiling reads: the declarations (and the folder, for a new one), mlbuild.yaml,
params.yaml (interpolated into cmds), the generated files themselves, every Python file of the
stages' code and the folders holding them (a new module may change what an import finds), the
interpreter, mlbuild's version and the installed distributions.
"""

from __future__ import annotations

import json
import posixpath
import sys
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import write_memo
from mlbuild.files.layout import DVC_FILE, ENV_FILE, PARAMS_FILE, stat_key, state_dir

MEMO = "compile.json"
FIXED = ("stages", "mlbuild.yaml", PARAMS_FILE, DVC_FILE, ENV_FILE, ".")


def _identity(root: Path, rel: str) -> list[int] | None:
    try:
        return list(stat_key((root / rel).stat()))
    except OSError:
        return None


def _environment() -> dict[str, str]:
    from mlbuild import __version__
    from mlbuild.config.environment import path_fingerprint

    return {"python": sys.version, "mlbuild": __version__, "packages": path_fingerprint()}


def _inputs(root: Path, doc: dict[str, Any]) -> list[str]:
    """Every path whose change may change the compiled files."""
    found = set(FIXED) | {p.relative_to(root).as_posix() for p in (root / "stages").glob("*.yaml")}
    for stage in (doc.get("stages") or {}).values():
        for dep in stage.get("deps") or []:
            if isinstance(dep, str) and dep.endswith(".py"):
                found |= {dep, posixpath.dirname(dep) or "."}
    return sorted(found)


def fresh(root: Path) -> bool:
    """True when the last compile's inputs are all as they were."""
    try:
        memo = json.loads((state_dir(root) / MEMO).read_text())
        paths = dict(memo["paths"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (all(_identity(root, rel) == key for rel, key in paths.items())
            and memo.get("environment") == _environment())


def record(root: Path, doc: dict[str, Any]) -> None:
    """Remember the inputs of a compile that left dvc.yaml and the environment record current."""
    paths = {rel: _identity(root, rel) for rel in _inputs(root, doc)}
    write_memo(state_dir(root) / MEMO,
               json.dumps({"paths": paths, "environment": _environment()}))
