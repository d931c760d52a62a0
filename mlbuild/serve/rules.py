"""pandera's built-in column checks as vectorised numpy rules (ranges, comparisons, allowed and
forbidden values, string lengths); any other check is left to pandera."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_COMPARE = {  # pandera check name -> (statistic, numpy ufunc that marks a FAILING value, words)
    "greater_than": ("min_value", "less_equal", "must be > {}"),
    "greater_than_or_equal_to": ("min_value", "less", "must be >= {}"),
    "less_than": ("max_value", "greater_equal", "must be < {}"),
    "less_than_or_equal_to": ("max_value", "greater", "must be <= {}"),
    "equal_to": ("value", "not_equal", "must equal {}"),
    "not_equal_to": ("value", "equal", "must not equal {}"),
}


@dataclass(frozen=True)
class Rule:
    """One compiled check: its pandera name, how it tests values, and its limits."""

    name: str
    kind: str  # "range", "compare", "isin", "notin", "str_length"
    args: tuple[Any, ...]

    def failing(self, values: Any) -> Any:
        """A boolean array, True where a value breaks the rule."""
        import numpy as np

        if self.kind == "range":
            low, high, include_low, include_high = self.args
            below = values < low if include_low else values <= low
            above = values > high if include_high else values >= high
            return below | above
        if self.kind == "compare":
            ufunc, limit = self.args
            return getattr(np, ufunc)(values, limit)
        if self.kind in ("isin", "notin"):
            found = np.isin(values, np.array(self.args, dtype=values.dtype if
                                             values.dtype != object else object))
            return ~found if self.kind == "isin" else found
        low, high = self.args  # str_length
        lengths = np.frompyfunc(lambda v: len(v) if isinstance(v, str) else 0, 1, 1)(values)
        lengths = lengths.astype(np.int64)
        return ((lengths < low) if low is not None else False) | (
            (lengths > high) if high is not None else False)

    def describe(self) -> str:
        """What the rule asks, in words."""
        if self.kind == "range":
            low, high, include_low, include_high = self.args
            return (f"is outside the range {'[' if include_low else '('}{low}, {high}"
                    f"{']' if include_high else ')'}")
        if self.kind == "compare":
            return f"is refused: values {_COMPARE[self.name][2].format(self.args[1])}"
        if self.kind == "isin":
            return f"is not one of {list(self.args)}"
        if self.kind == "notin":
            return f"is one of the forbidden values {list(self.args)}"
        low, high = self.args
        return f"has a length outside [{low}, {high}]"


def _rule(check: Any, datatype: str) -> Rule | None:
    """The compiled form of one pandera check, or None when it must stay with pandera."""
    stats = getattr(check, "statistics", None) or {}
    name = getattr(check, "name", None)
    numeric = datatype in ("INT64", "FP64")
    if name == "in_range" and numeric:
        return Rule(name, "range", (stats["min_value"], stats["max_value"],
                                    stats.get("include_min", True), stats.get("include_max", True)))
    if name in _COMPARE and numeric:
        key, ufunc, _ = _COMPARE[name]
        return Rule(name, "compare", (ufunc, stats[key]))
    if name == "isin":
        return Rule(name, "isin", tuple(stats["allowed_values"]))
    if name == "notin":
        return Rule(name, "notin", tuple(stats["forbidden_values"]))
    if name == "str_length" and datatype == "BYTES" and stats.get("exact_value") is None:
        return Rule(name, "str_length", (stats.get("min_value"), stats.get("max_value")))
    return None


def compile_checks(checks: Iterable[Any], datatype: str) -> tuple[tuple[Rule, ...], list[Any]]:
    """(the rules compiled to numpy, the checks pandera must still run)."""
    rules, rest = [], []
    for check in checks:
        rule = _rule(check, datatype)
        if rule is None:
            rest.append(check)
        else:
            rules.append(rule)
    return tuple(rules), rest
