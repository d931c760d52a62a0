"""One error root with families; each family carries its documented exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class MlbuildError(Exception):
    """Root of every error mlbuild raises on purpose."""

    exit_code = EXIT_INTERNAL


class BadInputError(MlbuildError):
    """The user's configuration, YAML, graph or command line is wrong (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A malformed or invalid YAML / config file."""


class GraphError(BadInputError):
    """The pipeline graph is invalid: cycles, duplicate outputs, missing dependencies."""


class UsageError(BadInputError):
    """The command line asks for something that does not exist."""


class BusyError(BadInputError):
    """Another mlbuild process holds the project lock."""


class StageFailedError(MlbuildError):
    """A stage command failed or did not produce what it declared (exit 1)."""

    exit_code = EXIT_FAILED


class IntegrityError(MlbuildError):
    """A cache or remote object does not match its hash (exit 1); it is never checked out."""

    exit_code = EXIT_FAILED


class DiskFullError(MlbuildError):
    """A write failed because its filesystem is full (exit 1); nothing half-written is kept."""

    exit_code = EXIT_FAILED


class CheckFailedError(MlbuildError):
    """A check found a difference (out-of-date dvc.yaml, failed verification; exit 1)."""

    exit_code = EXIT_FAILED


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and
    transpositions of neighbours each cost one (so 'dpes' is one step from 'deps')."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most likely intended choice: fewest typing slips first, then difflib's ratio."""
    choices = [str(c) for c in choices]
    limit = min(len(word), 9) // 3
    near = sorted((edit_distance(word.lower(), c.lower()), i) for i, c in enumerate(choices))
    if near and near[0][0] <= limit:
        return choices[near[0][1]]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or an empty string."""
    match = closest(word, choices)
    return f" (did you mean '{match}'?)" if match is not None else ""


def check_keys(data: dict[str, object], allowed: Iterable[str], where: str) -> None:
    """Raise ConfigError naming the first unknown key in *data*, with a suggestion."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )


def did_you_mean_key(key: str, keys: Iterable[str]) -> str:
    """did_you_mean for dotted keys: a slip in the last part is matched among its siblings
    only, so 'model.nope' is not taken for 'model.name'."""
    keys = list(keys)
    parent, _, leaf = key.rpartition(".")
    if parent and parent not in keys:
        return did_you_mean(key, keys)
    siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
    match = closest(leaf, siblings)
    return f" (did you mean '{parent + '.' if parent else ''}{match}'?)" if match else ""
