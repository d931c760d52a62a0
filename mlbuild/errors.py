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


class CheckFailedError(MlbuildError):
    """A check found a difference (out-of-date dvc.yaml, failed verification; exit 1)."""

    exit_code = EXIT_FAILED


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(data: dict[str, object], allowed: Iterable[str], where: str) -> None:
    """Raise ConfigError naming the first unknown key in *data*, with a suggestion."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )
