"""`mlbuild exp run --tune`: Optuna's TPE sampler proposes the variants, -j at a time; every
trial is an experiment like any other. The one module that imports Optuna.

The search space is Hydra's sweep grammar read as Hydra's Optuna sweeper reads it: `interval()`
a float (int when both ends are), `tag(log, interval())` on a log scale, `range()` a stepped
int or float, comma lists, `choice()` and `glob()` categorical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.config.sweep import Dimension, Sweep, override_for, search_space
from mlbuild.errors import UsageError, did_you_mean
from mlbuild.experiments import refs
from mlbuild.experiments.run import OK, OnVariant, Variant, close_sweep, run, sweep_record

if TYPE_CHECKING:
    import optuna

SEED = 42  # the default: the same command proposes the same trials
CORNERS = 64  # combinations of the space checked before the first trial


@dataclass(frozen=True)
class Tuning:
    """What to optimise and how long."""

    metric: str
    maximize: bool
    trials: int
    jobs: int = 1
    seed: int = SEED
    name: str | None = None


def _suggest(trial: optuna.trial.Trial, dim: Dimension) -> Any:
    if dim.choices:
        return trial.suggest_categorical(dim.key, list(dim.choices))
    if dim.integer:
        step = int(dim.step) if dim.step else 1
        return trial.suggest_int(dim.key, int(dim.low), int(dim.high), step=step, log=dim.log)
    return trial.suggest_float(dim.key, dim.low, dim.high, step=dim.step, log=dim.log)


def _study(tuning: Tuning) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=tuning.seed)
    direction = (optuna.study.StudyDirection.MAXIMIZE if tuning.maximize
                 else optuna.study.StudyDirection.MINIMIZE)
    return optuna.create_study(direction=direction, sampler=sampler)


def tune(root: Path, overrides: list[str], tuning: Tuning, on_variant: OnVariant,
         started: Callable[[str], None] | None = None) -> tuple[str, list[Variant]]:
    """Run the trials in batches of *jobs*, each told to the sampler once built."""
    baseline = refs.baseline(root)
    sweep = search_space(root, overrides)
    _check_space(root, sweep)  # a misspelt override is bad input before any trial
    if tuning.name is not None:
        refs.check_name(root, tuning.name)
    _check_metric(root, tuning.metric)
    if started is not None:
        started(baseline)
    study = _study(tuning)
    done: list[Variant] = []
    args = [*overrides, f"--tune={tuning.metric}", f"--trials={tuning.trials}"]
    with sweep_record(root, args, baseline) as recorder:
        recorder.record.detail["tune"] = {"metric": tuning.metric, "seed": tuning.seed,
                                          "maximize": tuning.maximize}
        while len(done) < tuning.trials:
            done += _batch(root, baseline, study, sweep, tuning, len(done), on_variant,
                           recorder.record.id)
        close_sweep(recorder, done)
    return baseline, done


def _batch(root: Path, baseline: str, study: optuna.Study, sweep: Sweep, tuning: Tuning,
           first: int, on_variant: OnVariant, parent: str) -> list[Variant]:
    """Ask the sampler for up to *jobs* trials, build them together, tell it the results."""
    trials = [study.ask() for _ in range(min(tuning.jobs, tuning.trials - first))]
    variants = [_variant(root, first + i, sweep.fixed, sweep.space, trial, tuning)
                for i, trial in enumerate(trials)]
    run(root, baseline, variants, tuning.jobs, on_variant, parent=parent)
    for trial, variant in zip(trials, variants, strict=True):
        study.tell(trial, _value(variant, tuning.metric) if variant.status == OK else None,
                   state=None if variant.status == OK else _failed())
    return variants


def _variant(root: Path, index: int, fixed: list[str], space: list[Dimension],
             trial: optuna.trial.Trial, tuning: Tuning) -> Variant:
    from mlbuild.experiments.conditional import fit

    swept = [override_for(dim, _suggest(trial, dim)) for dim in space]
    kept = fit(root, [*fixed, *swept]).kept  # a key this trial's group choice lacks: left out
    variant = Variant(index, kept, [o for o in swept if o in kept])
    if tuning.name is not None:
        variant.name = f"{tuning.name}-{index + 1}"
    return variant


def _check_space(root: Path, sweep: Sweep) -> None:
    """Every override fits some corner of the space: each categorical choice (a group
    choice decides which keys exist) with one value of each numeric dimension."""
    import itertools

    from mlbuild.experiments.conditional import fit_all

    axes = [[override_for(d, c) for c in d.choices] if d.choices else [override_for(d, d.low)]
            for d in sweep.space]
    fit_all(root, [sweep.fixed + list(combo)
                   for combo in itertools.islice(itertools.product(*axes), CORNERS)])


def _check_metric(root: Path, metric: str) -> None:
    """A metric the baseline's metrics files lack is bad input before any trial runs (when
    the baseline has none, the first trial's metrics are checked instead)."""
    from mlbuild.experiments.show import table

    known = table(root).rows[0].metrics
    if known and metric not in known:
        raise UsageError(f"--tune: no stage writes a metric '{metric}' (the metrics are: "
                         f"{', '.join(sorted(known))}){did_you_mean(metric, known)}")


def _failed() -> Any:
    import optuna

    return optuna.trial.TrialState.FAIL


def _value(variant: Variant, metric: str) -> float:
    value = variant.metrics.get(metric)
    if not isinstance(value, int | float):
        raise UsageError(f"--tune: no stage writes a metric '{metric}' (the metrics are: "
                         f"{', '.join(sorted(variant.metrics)) or 'none'})"
                         f"{did_you_mean(metric, variant.metrics)}")
    return float(value)
