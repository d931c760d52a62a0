"""The input contract of a served model: the pandera schema of its raw training data minus the
columns clients do not send, compiled into vectorised numpy checks so that every request is
validated in microseconds instead of a pandera run per request.

A schema's common rules (column types, nulls, ranges, comparisons, allowed and forbidden values,
string lengths, strict columns) are compiled; anything else (custom checks, regex columns,
uniqueness, table-level checks) is still enforced, by pandera itself after the fast checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError, UsageError
from mlbuild.serve.rules import Rule, compile_checks

DATATYPES = {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL", "O": "BYTES", "U": "BYTES"}
MAX_SHOWN = 3


class ContractViolation(UsageError):  # noqa: N818 -- a finding about the input, not a fault
    """A request or input file that breaks the model's input contract (one line, naming the
    column and the rule)."""

    def __init__(self, message: str, column: str | None, rule: str) -> None:
        super().__init__(message)
        self.column = column
        self.rule = rule


@dataclass(frozen=True)
class Feature:
    """One input column of the model, as the Open Inference Protocol describes it."""

    name: str
    datatype: str  # "INT64", "FP64", "BOOL" or "BYTES"
    nullable: bool = False


@dataclass(frozen=True)
class _Block:
    """Columns that share a type and rules: checked together on one 2-D array."""

    columns: tuple[str, ...]
    datatype: str
    nullable: bool
    rules: tuple[Rule, ...]

    def index(self) -> Any:
        """The block's column labels as a pandas Index (built once: building one per request
        costs more than the checks)."""
        cached = _INDEXES.get(self.columns)
        if cached is None:
            import pandas as pd

            cached = _INDEXES[self.columns] = pd.Index(self.columns)
        return cached


_INDEXES: dict[tuple[str, ...], Any] = {}

class InputContract:
    """The columns a model takes, their types and rules, checked on every request."""

    def __init__(self, features: Sequence[Feature], blocks: Sequence[_Block],
                 rest: Callable[[Any], Any] | None, source: str) -> None:
        self.features = tuple(features)
        self.names = [f.name for f in self.features]
        self._known = frozenset(self.names)
        self._blocks = tuple(blocks)
        self._rest = rest  # pandera for what was not compiled; None when everything was
        self.source = source  # the schema reference, for messages and metadata

    def check(self, frame: Any) -> Any:
        """The frame with the contract's columns in order, types coerced when no value changes;
        ContractViolation for a missing or unknown column, a wrong type, a null or a value
        a rule refuses."""
        columns = frame.columns.tolist()
        if columns != self.names:
            self._check_names([str(c) for c in columns])
            frame = frame[self.names]
        if len(frame) == 0:
            raise ContractViolation("no rows to score (rows)", None, "rows")
        whole = len(self._blocks) == 1
        parts = [_check_block(block, frame, whole) for block in self._blocks]
        checked = parts[0] if len(parts) == 1 else _join(parts, self.names)
        if self._rest is not None:
            self._rest(checked)
        return checked

    def _check_names(self, columns: list[str]) -> None:
        unknown = [c for c in columns if c not in self._known]
        if unknown:
            raise ContractViolation(
                f"unknown column '{unknown[0]}': the model takes {_shown(self.names)} (strict)",
                unknown[0], "strict")
        missing = [n for n in self.names if n not in set(columns)]
        if missing:
            what = (f"columns '{missing[0]}' and {len(missing) - 1} more are" if len(missing) > 1
                    else f"column '{missing[0]}' is")
            raise ContractViolation(f"{what} missing (required)", missing[0], "required")
        if len(set(columns)) != len(columns):
            twice = next(c for c in columns if columns.count(c) > 1)
            raise ContractViolation(f"column '{twice}' is given twice (unique_names)", twice,
                                    "unique_names")


def _shown(names: Sequence[str]) -> str:
    if len(names) <= MAX_SHOWN:
        return ", ".join(names)
    return f"{names[0]}..{names[-1]} ({len(names)} columns)"


def _join(parts: list[Any], names: list[str]) -> Any:
    import pandas as pd

    return pd.concat(parts, axis=1)[names]


def _check_block(block: _Block, frame: Any, whole: bool) -> Any:
    """Coerce and check one block of columns (*whole*: the block is the entire frame, in
    order); the checked sub-frame."""
    import numpy as np
    import pandas as pd

    sub = frame if whole else frame[list(block.columns)]
    raw = sub.to_numpy()  # one array: the common type of the columns, object when mixed
    values = _coerce(block, sub, raw)
    if block.datatype != "BYTES" and values.dtype.kind == "f":
        nulls = np.isnan(values)
        if not block.nullable and nulls.any():
            _fail(block, values, nulls, "not_nullable", "is not allowed")
    else:
        nulls = None
    for rule in block.rules:
        bad = rule.failing(values)
        if nulls is not None:
            bad &= ~nulls
        if bad.any():
            _fail(block, values, bad, rule.name, rule.describe())
    if values is raw and whole:
        return frame
    return pd.DataFrame(values, columns=block.index(), index=frame.index, copy=False)


def _coerce(block: _Block, sub: Any, raw: Any) -> Any:
    """The block's values as one array of its type; ContractViolation naming the first value
    that cannot be that type without changing."""
    import numpy as np

    kind = raw.dtype.kind
    if block.datatype == "BYTES":
        bad = np.frompyfunc(lambda v: not isinstance(v, str) and v is not None, 1, 1)(raw)
        if bad.astype(bool).any():
            _fail(block, raw, bad.astype(bool), "dtype", "is not a string")
        return raw.astype(object, copy=False)
    if block.datatype == "BOOL":
        if kind != "b":
            _first_wrong(block, sub, lambda v: isinstance(v, bool | np.bool_), "true or false")
            raise ContractViolation(f"columns {_shown(block.columns)}: a null is not allowed "
                                    "(not_nullable)", None, "not_nullable")
        return raw
    if kind in "iu":
        return raw.astype(np.int64 if block.datatype == "INT64" else np.float64, copy=False)
    if kind != "f":
        _first_wrong(block, sub, _is_number, "a number")
        raw = raw.astype(np.float64)  # objects that are all numbers (None: a null)
    if block.datatype == "FP64":
        return raw.astype(np.float64, copy=False)
    nan = np.isnan(raw)
    whole = np.isfinite(raw) & (raw == np.round(raw))
    if not (whole | nan).all():
        _fail(block, raw, ~(whole | nan), "dtype", "is not an integer")
    return raw if nan.any() else raw.astype(np.int64)  # nulls stay NaN for the null check


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_)


def _first_wrong(block: _Block, sub: Any, ok: Callable[[Any], bool], expected: str) -> None:
    """Raise naming the first value of the wrong type, if any (a slow walk: only for a frame
    whose columns are objects, as JSON with mixed values decodes)."""
    for name in block.columns:
        for row, value in enumerate(sub[name].tolist()):
            if not ok(value) and value is not None:
                raise ContractViolation(f"column '{name}': {value!r} at row {row} is not "
                                        f"{expected} (dtype {block.datatype})", name, "dtype")


def _fail(block: _Block, values: Any, bad: Any, rule: str, what: str) -> None:
    import numpy as np

    rows, cols = np.nonzero(bad.reshape(values.shape))
    row, col = int(rows[0]), int(cols[0])
    name = block.columns[col]
    value = values[row, col]
    shown = "null" if rule == "not_nullable" else repr(value.item() if hasattr(value, "item")
                                                        else value)
    more = f" ({len(rows)} failing values)" if len(rows) > 1 else ""
    raise ContractViolation(f"column '{name}': {shown} at row {row} {what} ({rule}){more}",
                            name, rule)


def compile_schema(schema: Any, drop: Sequence[str], source: str,
                   order: Sequence[str] | None = None) -> InputContract:
    """Compile a pandera DataFrameSchema, without the *drop* columns, into an InputContract
    whose columns come in *order* when given (the order the model was fitted in)."""
    unknown = [name for name in drop if name not in schema.columns]
    if unknown:
        raise ConfigError(f"{source}: cannot drop '{unknown[0]}': the schema has no such column "
                          f"(columns: {_shown(list(schema.columns))})")
    kept = {name: col for name, col in schema.columns.items() if name not in set(drop)}
    if order is not None and set(order) == set(kept):
        kept = {name: kept[name] for name in order}
    if not kept:
        raise ConfigError(f"{source}: no column is left once {', '.join(drop)} are dropped")
    features, leftover = [], []
    groups: dict[tuple[str, bool, tuple[Rule, ...]], list[str]] = {}
    for name, column in kept.items():
        datatype = _datatype(column, source, name)
        rules, rest = compile_checks(column.checks, datatype)
        features.append(Feature(str(name), datatype, bool(column.nullable)))
        key = (datatype, bool(column.nullable), rules)
        groups.setdefault(key, []).append(str(name))
        if rest or column.regex or column.unique:
            leftover.append(name)
    blocks = [_Block(tuple(cols), dt, nullable, rules)
              for (dt, nullable, rules), cols in groups.items()]
    return InputContract(features, blocks, _pandera_rest(schema, kept, leftover), source)


def _datatype(column: Any, source: str, name: str) -> str:
    import numpy as np

    try:
        kind = np.dtype(column.dtype.type).kind if column.dtype is not None else "O"
    except TypeError:
        kind = "O" if "str" in str(column.dtype) else "?"
    if kind not in DATATYPES:
        raise ConfigError(f"{source}: column '{name}' has type {column.dtype}, which a request "
                          "cannot carry (supported: integers, floats, booleans, strings)")
    return DATATYPES[kind]


def _pandera_rest(schema: Any, kept: dict[str, Any], leftover: list[str]
                  ) -> Callable[[Any], Any] | None:
    """What the compiled checks do not cover, checked by pandera (None when nothing is left)."""
    if not leftover and not schema.checks and not schema.unique:
        return None
    import pandera.errors as perr
    import pandera.pandas as pa

    sub = pa.DataFrameSchema({n: kept[n] for n in leftover}, checks=schema.checks,
                             unique=schema.unique, strict=False)

    def check(frame: Any) -> Any:
        try:
            return sub.validate(frame, lazy=False)
        except perr.SchemaError as exc:
            column = getattr(exc.schema, "name", None)
            check_name = getattr(exc.check, "name", None) or "schema"
            detail = " ".join(str(exc).split())[:200]
            raise ContractViolation(f"column '{column}': {detail} ({check_name})"
                                    if column else f"{detail} ({check_name})",
                                    column, str(check_name)) from exc

    return check


def input_contract(root: Path, model: str, commit: str | None, fitted: object | None
                   ) -> InputContract:
    """The contract requests for *model* must meet: `serving.<model>` in mlbuild.yaml (a schema
    and the columns to drop), else the raw data contract upstream of the artifact at *commit*
    restricted to the features *fitted* was trained on."""
    from mlbuild.contracts import load_schema
    from mlbuild.serve.contract_source import configured, upstream

    found = configured(root, model) or upstream(root, model, commit)
    if found is None:
        raise ConfigError(f"model '{model}' has no input contract: add 'serving: {{{model}: "
                          "{input: module:schema, drop: [label]}}' to mlbuild.yaml")
    ref, drop = found
    schema = load_schema(root, ref)
    fitted_names = _fitted_names(fitted)
    if drop is None:
        if fitted_names is None:
            raise ConfigError(f"model '{model}': cannot tell which columns of {ref} are features; "
                              f"list the others in mlbuild.yaml serving.{model}.drop")
        drop = [c for c in schema.columns if c not in set(fitted_names)]
    contract = compile_schema(schema, drop, ref, fitted_names)
    if fitted_names is not None and fitted_names != contract.names:
        raise ConfigError(f"model '{model}': its input contract {ref} (minus {', '.join(drop)}) "
                          f"names {_shown(contract.names)} but the model was fitted on "
                          f"{_shown(list(fitted_names))}")
    return contract


def _fitted_names(fitted: object | None) -> list[str] | None:
    names = getattr(fitted, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]
