"""Hydra's sweep grammar on the command line: the grid of variants, or a search space to tune.

Parsing is Hydra's own (its override grammar), so `a=1,2`, `range(...)`, `choice(...)`,
`glob(...)`, `interval(...)` and `tag(log, ...)` mean here what they mean under `hydra -m` and
in the Optuna sweeper. Group sweeps (`model=lightgbm,logreg`) are ordinary choice sweeps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

MAX_VARIANTS = 10_000  # a grid this large is a typo (range(0,1000000)), not an experiment


@dataclass(frozen=True)
class Dimension:
    """One tunable parameter: a categorical choice, or an int/float interval."""

    key: str
    choices: tuple[Any, ...] = ()  # non-empty for a categorical dimension
    low: float = 0.0
    high: float = 0.0
    integer: bool = False
    log: bool = False
    step: float | None = None  # range(start, stop, step) sampled on its grid


@dataclass(frozen=True)
class Sweep:
    """The overrides every variant shares, the swept ones, and (for tuning) the search space."""

    fixed: list[str] = field(default_factory=list)
    swept: list[list[str]] = field(default_factory=list)  # per swept key: its `key=value`s
    space: list[Dimension] = field(default_factory=list)

    def grid(self) -> list[list[str]]:
        """Every variant's overrides: the cartesian product of the swept keys."""
        return [self.fixed + list(combo) for combo in itertools.product(*self.swept)]


def _parse(overrides: list[str]) -> list[Override]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return list(OverridesParser.create().parse_overrides(overrides))
    except OverrideParseException as exc:
        first = str(exc).splitlines()[0].rstrip(".")
        raise ConfigError(f"override '{exc.override}': {first} (see Hydra's sweep grammar: "
                          "a=1,2  range(1,5)  choice(a,b)  glob(*)  interval(0,1))") from exc


def group_options(root: Path, group: str) -> list[str]:
    """The config files of a Hydra config group under configs/ (for `glob(...)`)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    from mlbuild.config.compose import CONFIG_DIR

    with initialize_config_dir(str((root / CONFIG_DIR).resolve()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return list(loader.get_group_options(group, results_filter=ObjectType.CONFIG))


def _values(root: Path, override: Override) -> list[str]:
    """The string values a discrete sweep takes, in order."""
    from hydra.core.override_parser.types import Glob

    value = override.value()
    if isinstance(value, Glob):
        return list(value.filter(group_options(root, override.key_or_group)))
    return list(override.sweep_string_iterator())


def parse(root: Path, overrides: list[str]) -> Sweep:
    """Split *overrides* into the shared ones and the swept ones (discrete sweeps only)."""
    fixed: list[str] = []
    swept: list[list[str]] = []
    for override in _parse(overrides):
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(f"{key}={override.get_value_element_as_str()}")
            continue
        if not override.is_discrete_sweep():
            raise ConfigError(f"override '{override.input_line}': an interval() has no grid; "
                              "sample it with --tune METRIC --trials N")
        values = _values(root, override)
        if not values:
            raise ConfigError(f"override '{override.input_line}': the sweep has no values "
                              "(an empty range or a glob that matches no config)")
        swept.append([f"{key}={v}" for v in values])
    sweep = Sweep(fixed=fixed, swept=swept)
    size = 1
    for values in swept:
        size *= len(values)
    if size > MAX_VARIANTS:
        raise ConfigError(f"the sweep has {size} variants (more than {MAX_VARIANTS}); "
                          "narrow a range() or a list")
    return sweep


def _dimension(root: Path, override: Override) -> Dimension:
    """A swept override as a search-space dimension, as Hydra's Optuna sweeper reads it."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    key = override.get_key_element()
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, IntervalSweep):
        low, high = float(value.start or 0), float(value.end or 0)
        integer = isinstance(value.start, int) and isinstance(value.end, int)
        if not low < high:
            raise ConfigError(f"override '{override.input_line}': interval() needs low < high")
        if log and low <= 0:
            raise ConfigError(f"override '{override.input_line}': a log interval needs low > 0")
        return Dimension(key, low=low, high=high, integer=integer, log=log)
    if isinstance(value, RangeSweep) and not log:
        numbers = [value.start, value.stop, value.step]
        integer = all(isinstance(n, int) for n in numbers)
        stop = float(value.stop or 0) - float(value.step or 1)  # range() excludes its stop
        if float(value.start or 0) > stop:
            raise ConfigError(f"override '{override.input_line}': the range is empty")
        return Dimension(key, low=float(value.start or 0), high=stop, integer=integer,
                         step=float(value.step or 1))
    values = tuple(_values(root, override))
    if not values:
        raise ConfigError(f"override '{override.input_line}': the sweep has no values")
    return Dimension(key, choices=values)


def search_space(root: Path, overrides: list[str]) -> Sweep:
    """The shared overrides and the dimensions to tune (every swept override is one)."""
    fixed: list[str] = []
    space: list[Dimension] = []
    for override in _parse(overrides):
        if override.is_sweep_override():
            space.append(_dimension(root, override))
        else:
            fixed.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
    if not space:
        raise ConfigError("--tune needs a search space: sweep at least one parameter, e.g. "
                          "model.learning_rate='interval(0.01,0.3)' or model=lightgbm,logreg")
    return Sweep(fixed=fixed, space=space)


def override_for(dim: Dimension, value: Any) -> str:
    """The `key=value` override that sets *dim* to a sampled value."""
    if dim.integer and not dim.choices:
        value = int(value)
    return f"{dim.key}={value}"
