"""Data contracts: pandera schemas checked on a stage's tabular inputs and outputs."""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError, StageFailedError, did_you_mean

READERS = (".csv", ".tsv", ".parquet", ".json", ".jsonl")
MAX_VALUES = 5


class Side(StrEnum):
    """Where a contract is checked (the value is how messages name the file)."""

    INPUT = "input"  # a stage's input, before its command runs
    OUTPUT = "output"  # a stage's output, before it is committed
    DATA = "data"  # a file tracked with `mlbuild data add` (mlbuild.yaml `contracts`)


@dataclass(frozen=True)
class Contract:
    """One data file and the schema it must satisfy."""

    path: str  # project-relative
    schema: str  # 'package.module:attribute' or a project-relative .yaml/.yml file
    side: Side


def is_file_ref(ref: str) -> bool:
    """A schema reference naming a pandera YAML file (rather than module:attribute)."""
    return ref.endswith((".yaml", ".yml"))


def check_ref(ref: Any, where: str) -> str:
    """Validate the shape of a schema reference."""
    if not isinstance(ref, str) or not (is_file_ref(ref) or ":" in ref):
        raise ConfigError(
            f"{where}: a schema is 'package.module:attribute' or a pandera .yaml file, "
            f"got {ref!r}"
        )
    return ref


def _top_level_names(body: list[ast.stmt]) -> set[str] | None:
    """Names a module body binds (None when it cannot be told: a star import, __getattr__)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
        else:  # if/try/with blocks at module level bind names too
            blocks = [getattr(node, k, []) for k in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                inner = _top_level_names(block) if isinstance(block, list) else set()
                if inner is None:
                    return None
                names |= inner
    return None if "__getattr__" in names else names


def check_attribute(module: Path, ref: str, where: str) -> None:
    """Without importing it, check that the module of a 'module:attribute' reference defines
    the attribute, so a typo is a config error before anything runs."""
    attr = ref.partition(":")[2]
    try:
        names = _top_level_names(ast.parse(module.read_bytes(), filename=str(module)).body)
    except (OSError, SyntaxError, ValueError):
        return  # importing it reports the real problem when the contract is checked
    if names is not None and attr not in names:
        raise ConfigError(
            f"{where}: schema '{ref}': {module.name} defines no '{attr}'"
            f"{did_you_mean(attr, sorted(n for n in names if not n.startswith('_')))}"
        )


@contextmanager
def _project_modules(root: Path) -> Iterator[None]:
    """Import the project's schema modules from *root* and leave nothing behind: sys.path is
    put back and the project modules imported meanwhile are forgotten, so a long-lived process
    loads the current file next time instead of a stale copy."""
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if _is_project_module(root, name):
                del sys.modules[name]


def _is_project_module(root: Path, name: str) -> bool:
    """A module of the project's own code: under *root*, but not mlbuild itself and not an
    installed package (a virtual environment may live inside the project)."""
    origin = getattr(sys.modules[name], "__file__", None)
    if not origin or name.split(".", maxsplit=1)[0] == "mlbuild":
        return False
    path = Path(origin)
    return (path.is_relative_to(root) and not path.is_relative_to(sys.prefix)
            and "site-packages" not in path.parts)


def load_schema(root: Path, ref: str) -> Any:
    import pandera.pandas as pa

    if is_file_ref(ref):
        try:
            return pa.DataFrameSchema.from_yaml(str(root / ref))
        except Exception as exc:
            raise ConfigError(f"schema '{ref}': cannot load: {exc}") from exc
    module_name, _, attr = ref.partition(":")
    try:
        with _project_modules(root):
            module = importlib.import_module(module_name)
            obj = getattr(module, attr)
        schema = obj() if callable(obj) and not isinstance(obj, pa.DataFrameSchema) else obj
    except Exception as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ConfigError(f"schema '{ref}': cannot load: {detail}") from exc
    if not isinstance(schema, pa.DataFrameSchema):
        raise ConfigError(f"schema '{ref}' is not a pandera DataFrameSchema")
    return schema


def read_frame(path: Path, suffix: str | None = None) -> Any:
    """A data file as a pandas frame, read by its suffix (or *suffix*, for a cache object)."""
    import pandas as pd

    suffix = (suffix or path.suffix).lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise ConfigError(f"contract on '{path.name}': only {', '.join(READERS)} files can be checked")


def _summary(exc: Any) -> str:
    cases = exc.failure_cases
    if cases is None or len(cases) == 0:
        return " ".join(str(exc).split())[:300]
    first = cases.iloc[0]
    same = cases[(cases["column"] == first["column"]) & (cases["check"] == first["check"])]
    distinct = same["failure_case"].drop_duplicates()  # 99.0 once, not five times
    values = ", ".join(repr(v) for v in distinct.head(MAX_VALUES).tolist())
    more = ", ..." if len(distinct) > MAX_VALUES else ""
    more += f" ({len(same)} failing values)" if len(same) > 1 else ""
    others = len(cases) - len(same)
    tail = f"; {others} other failure(s)" if others else ""
    column = first["column"] if first["column"] is not None else "(table)"
    return f"column '{column}' failed {first['check']}: {values}{more}{tail}"


def validate(root: Path, contract: Contract, stage: str | None) -> None:
    """Check one file against its schema; a violation fails the stage with a report. Without
    a stage (tracked data checked on add or pull) the file alone is named."""
    import pandera.errors as perr

    schema = load_schema(root, contract.schema)
    path = root / contract.path
    what = f"stage '{stage}': {contract.side} '{contract.path}'" if stage else f"'{contract.path}'"
    if not path.is_file():
        raise StageFailedError(f"{what} named in a contract is not a file")
    try:
        try:
            frame = read_frame(path)
        except (ValueError, OSError) as exc:  # empty or malformed file, unreadable parquet
            raise StageFailedError(
                f"{what} cannot be read for its contract ({contract.schema}): "
                f"{' '.join(str(exc).split())[:200]}"
            ) from exc
        schema.validate(frame, lazy=True)
    except perr.SchemaErrors as exc:
        raise StageFailedError(
            f"{what} violates its contract ({contract.schema}): {_summary(exc)}"
        ) from exc
    except perr.SchemaError as exc:
        raise StageFailedError(
            f"{what} violates its contract ({contract.schema}): "
            f"{' '.join(str(exc).split())[:300]}"
        ) from exc
