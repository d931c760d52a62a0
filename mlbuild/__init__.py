"""mlbuild: a declarative, DVC-compatible build tool for reproducible machine learning."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own import costs every command 8 ms
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "stage_params", "stage_seed", "stage_threads"]


def stage_params(stage: str | None = None) -> Any:
    """Return the current stage's declared params as a read-only OmegaConf config."""
    from mlbuild.config.stageparams import stage_params as _impl

    return _impl(stage)


def stage_seed() -> int:
    """The seed mlbuild hands the running stage (its hermetic ``seed`` setting)."""
    from mlbuild.config.stageparams import stage_seed as _impl

    return _impl()


def stage_threads() -> int:
    """The number of threads the running stage is pinned to (its hermetic ``threads``)."""
    from mlbuild.config.stageparams import stage_threads as _impl

    return _impl()
