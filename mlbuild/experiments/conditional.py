"""Overrides that apply to some variants only: a sweep over config groups and their keys.

In `model=lightgbm,logreg model.learning_rate=0.05,0.1`, the learning rate is a key of the
lightgbm config only. Hydra (and DVC's `-S`, which applies overrides in Hydra's struct mode)
refuse such a grid outright; a user means "the learning rates of the model that has one". So
an override of a key that a variant's composition lacks is left out of that variant, variants
that then coincide are built once, and an override that fits no variant at all is still bad
input (a misspelt key), with Hydra's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlbuild.config.compose import compose, missing_override
from mlbuild.errors import ConfigError


@dataclass(frozen=True)
class Fitted:
    """A variant's overrides that its composition has keys for, and those left out."""

    kept: list[str]
    dropped: list[str]


def fit(root: Path, overrides: list[str]) -> Fitted:
    """Compose *overrides*, leaving out those whose key this composition does not have."""
    kept, dropped = list(overrides), list[str]()
    while True:
        try:
            compose(root, kept)
            return Fitted(kept, dropped)
        except ConfigError as exc:
            culprit = missing_override(exc, kept)
            if culprit is None:
                raise
            kept.remove(culprit)
            dropped.append(culprit)


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def _shape(root: Path, overrides: list[str]) -> tuple[str, ...]:
    """What decides which keys a composition has: the group choices, and the keys set."""
    from mlbuild.config.compose import CONFIG_DIR

    return tuple(o if (root / CONFIG_DIR / _key(o).lstrip("+~")).is_dir() else _key(o)
                 for o in overrides)


def _fit_like(root: Path, overrides: list[str], drop: set[str],
              composed: set[tuple[str, ...]]) -> Fitted | None:
    """fit() answered from a variant of the same shape: compose only what is new."""
    kept = [o for o in overrides if _key(o) not in drop]
    if tuple(kept) not in composed:
        try:
            compose(root, kept)
        except ConfigError:
            return None  # let fit() find out what is wrong
    return Fitted(kept, [o for o in overrides if _key(o) in drop])


def fit_all(root: Path, grid: list[list[str]]) -> list[Fitted]:
    """fit() for every variant of a grid (the keys a shape lacks found once per shape, and
    each distinct variant composed once); an override no variant keeps is refused with
    Hydra's error for it."""
    drops: dict[tuple[str, ...], set[str]] = {}
    composed: set[tuple[str, ...]] = set()
    fitted = []
    for overrides in grid:
        shape = _shape(root, overrides)
        found = _fit_like(root, overrides, drops[shape], composed) if shape in drops else None
        if found is None:
            found = fit(root, overrides)
            drops[shape] = {_key(o) for o in found.dropped}
        composed.add(tuple(found.kept))
        fitted.append(found)
    used = {_key(o) for f in fitted for o in f.kept}
    unused = [(f, o) for f in fitted for o in f.dropped if _key(o) not in used]
    if unused:
        raise _blame(root, unused)
    return fitted


def _blame(root: Path, unused: list[tuple[Fitted, str]]) -> ConfigError:
    """Hydra's own error for the first override no variant keeps, from the variant where it
    comes with a "did you mean" (the group choice whose keys are nearest), if one does."""
    first = unused[0][1]
    errors = []
    for found, override in unused:
        if override != first:
            continue
        try:
            compose(root, [*found.kept, override])
        except ConfigError as exc:
            errors.append(exc)
    hinted = [e for e in errors if "did you mean" in str(e)]
    return (hinted or errors or [ConfigError(
        f"override '{first}': no variant's config has the key '{_key(first)}'")])[0]
