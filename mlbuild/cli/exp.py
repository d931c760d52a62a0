"""`mlbuild exp run/show/apply/remove`: sweeps in isolated workspaces on one cache, compared in a
table, stored as DVC experiments."""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
from enum import StrEnum
from typing import Annotated, Any

import typer

from mlbuild.errors import StageFailedError, UsageError


class Direction(StrEnum):
    """Which way the --tune metric improves."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


exp_app = typer.Typer(no_args_is_help=True, help="Experiments: sweeps, comparison, cleanup.")
_PRINT = threading.Lock()


def _root() -> Any:
    from mlbuild.files.layout import find_root  # not the engine's: exp show stays light

    return find_root()


@exp_app.command("run", context_settings={"allow_extra_args": True})
def run(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Hydra overrides and sweeps: key=a,b  key=range(1,5)  group=glob(*).")] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1,
                                      help="Variants built at the same time.")] = 1,
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="Experiment name (NAME-1, NAME-2... for a sweep).")] = None,
    tune: Annotated[str | None, typer.Option(
        "--tune", help="Search the sweep's space for the best value of this metric (Optuna TPE)."
    )] = None,
    direction: Annotated[Direction, typer.Option(
        "--direction", help="Whether the --tune metric is better large or small.")
    ] = Direction.MAXIMIZE,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials for --tune.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="The sampler's seed for --tune.")] = 42,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build each variant of a sweep in its own workspace and save it as an experiment."""
    from mlbuild.experiments import run as exp

    root = _root()
    report = _reporter(json_out)
    if tune is not None:
        baseline, variants = _tune(root, list(overrides or []), tune, direction, trials, seed,
                                   jobs, name, report, json_out)
    else:
        baseline, variants = exp.plan(root, list(overrides or []), name)
        if not json_out:
            typer.echo(f"{len(variants)} variant(s) of {baseline[:7]}, {jobs} at a time")
        with exp.sweep_record(root, list(overrides or []), baseline) as recorder:
            exp.run(root, baseline, variants, jobs, report, parent=recorder.record.id)
            exp.close_sweep(recorder, variants)
    _finish(baseline, variants, json_out)


def _tune(root: Any, overrides: list[str], metric: str, direction: Direction, trials: int,
          seed: int, jobs: int, name: str | None, report: Any, json_out: bool
          ) -> tuple[str, list[Any]]:
    from mlbuild.experiments.tune import Tuning, tune

    tuning = Tuning(metric, direction == Direction.MAXIMIZE, trials, jobs, seed, name)

    def started(baseline: str) -> None:
        if not json_out:
            typer.echo(f"tuning {metric} ({direction}) over {trials} trial(s) of "
                       f"{baseline[:7]}, {jobs} at a time, seed {seed}")
    return tune(root, overrides, tuning, report, started)


def _reporter(json_out: bool) -> Any:
    def report(variant: Any) -> None:
        if json_out:
            return
        with _PRINT:
            label = " ".join(variant.swept) or "(no overrides)"
            if variant.status == "running":
                typer.echo(f"  started   {label}")
                return
            done = f"{variant.status:<9} {label}  {variant.seconds:.1f}s"
            typer.echo(f"  {done}" + (f"  -> {variant.name}" if variant.commit else "")
                       + (f"  ({variant.error})" if variant.error else ""))
    return report


def _finish(baseline: str, variants: list[Any], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps({"baseline": baseline,
                               "variants": [v.to_json() for v in variants]}, indent=2))
    failed = [v for v in variants if v.status != "ok"]
    if failed:
        raise StageFailedError(f"{len(failed)} of {len(variants)} variant(s) did not finish: "
                               + "; ".join(f"{' '.join(v.swept) or 'variant'}: {v.error}"
                                           for v in failed[:3]))


@exp_app.command("show")
def show(
    sort_by: Annotated[str | None, typer.Option("--sort-by", help="A metric to sort by.")] = None,
    ascending: Annotated[bool, typer.Option(
        "--ascending", help="Smallest first (for a loss); default largest first.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    md_out: Annotated[bool, typer.Option("--md", help="Print a Markdown table.")] = False,
) -> None:
    """One row per experiment of this commit: the params that differ and every metric."""
    from mlbuild.experiments.show import table

    result = table(_root(), sort_by, ascending)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
        return
    header = ["Experiment", "rev", *result.metrics, *result.params]
    rows = [[("baseline " if r.baseline else "") + r.name, r.rev,
             *(_cell(r.metrics.get(k)) for k in result.metrics),
             *(_cell(r.params.get(k)) for k in result.params)] for r in result.rows]
    if csv_out:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
        sys.stdout.write(buffer.getvalue())
    elif md_out:
        lines = [header, ["---"] * len(header), *rows]
        typer.echo("\n".join("| " + " | ".join(line) + " |" for line in lines))
    else:
        typer.echo(_text_table(header, rows))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    """Aligned columns (numbers to the right) under a rule, the baseline set apart: plain
    text, since rich takes longer to draw 200 rows than exp show takes to read them."""
    columns = list(zip(header, *rows, strict=True))
    widths = [max(len(cell) for cell in column) for column in columns]
    numeric = [all(_is_number(cell) for cell in column[1:]) for column in columns]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w)
                         for cell, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    rule = "  ".join("─" * w for w in widths)
    body = [line(row) for row in rows]
    return "\n".join([line(header), rule, *body[:1], *([rule] if body[1:] else []), *body[1:]])


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True


@exp_app.command("plot")
def plot(
    metric: Annotated[str | None, typer.Argument(
        help="The metric to draw (default: the first one).")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="The PNG to write.")
                   ] = "exp_plot.png",
) -> None:
    """Draw a metric against each parameter the experiments vary (a PNG)."""
    from pathlib import Path

    from mlbuild.experiments.plot import pick_metric
    from mlbuild.experiments.plot import plot as draw
    from mlbuild.experiments.show import table

    result = table(_root())
    chosen = pick_metric(result, metric)
    params = draw(result, chosen, Path(out))
    typer.echo(f"wrote {out}: {chosen} against {', '.join(params)}")


@exp_app.command("apply")
def apply(
    name: Annotated[str, typer.Argument(help="The experiment.")],
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Overwrite uncommitted changes in the way.")] = False,
) -> None:
    """Make an experiment's params, dvc.lock, metrics and outputs the workspace's (no rebuild)."""
    from mlbuild.experiments.apply import apply as apply_exp

    done = apply_exp(_root(), name, force)
    configs = f"; {', '.join(done.configs)} edited" if done.configs else ""
    typer.echo(f"applied experiment '{done.name}' ({done.commit[:7]}): {len(done.files)} "
               f"file(s) written, {len(done.outputs)} output(s) checked out of the cache{configs}")


@exp_app.command("branch")
def branch(
    name: Annotated[str, typer.Argument(help="The experiment.")],
    new_branch: Annotated[str, typer.Argument(help="The git branch to create.")],
) -> None:
    """Make a git branch of an experiment (its commit, on its baseline)."""
    from mlbuild.experiments import refs

    root = _root()
    exp = refs.resolve(root, [name])[0]
    refs.branch(root, exp, new_branch)
    typer.echo(f"branch '{new_branch}' is experiment '{exp.name}' ({exp.commit[:7]})")


@exp_app.command("push")
def push(
    git_remote: Annotated[str, typer.Argument(help="The git remote for the refs.")] = "origin",
    names: Annotated[list[str] | None, typer.Argument(
        help="Experiments to push (default: every experiment of this commit).")] = None,
    remote: Annotated[str | None, typer.Option(
        "-r", "--remote", help="The DVC remote for their outputs (default: the default).")
    ] = None,
) -> None:
    """Share experiments: outputs to the DVC remote, then refs to the git remote."""
    from mlbuild.experiments import refs, share

    root = _root()
    exps = refs.resolve(root, names) if names else refs.list_refs(root, refs.baseline(root))
    if not exps:
        raise UsageError("exp push: this commit has no experiments to push")
    done = share.push(root, git_remote, exps, remote)
    typer.echo(f"pushed {len(done.experiments)} experiment(s) to '{git_remote}' "
               f"and {done.objects} object(s) to the DVC remote")


@exp_app.command("pull")
def pull(
    git_remote: Annotated[str, typer.Argument(help="The git remote for the refs.")] = "origin",
    names: Annotated[list[str] | None, typer.Argument(
        help="Experiments to pull (default: all of them).")] = None,
    remote: Annotated[str | None, typer.Option(
        "-r", "--remote", help="The DVC remote for their outputs (default: the default).")
    ] = None,
) -> None:
    """Fetch experiments: refs from the git remote, their outputs from the DVC remote."""
    from mlbuild.experiments import share

    done = share.pull(_root(), git_remote, list(names or []), remote)
    typer.echo(f"pulled {len(done.experiments)} experiment(s)"
               + (f" ({', '.join(done.experiments)})" if done.experiments else "")
               + f"; {done.objects} output object(s) present and verified")


@exp_app.command("remove")
def remove(
    names: Annotated[list[str] | None, typer.Argument(help="Experiments to remove.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every experiment of this commit.")]
    = False,
) -> None:
    """Remove experiments (their refs; outputs stay in the cache until gc)."""
    from mlbuild.experiments import refs

    root = _root()
    if bool(names) == all_:
        raise UsageError("exp remove: name the experiments, or pass --all")
    found = refs.list_refs(root, refs.baseline(root)) if all_ else refs.resolve(root, names or [])
    refs.remove(root, found)
    typer.echo(f"removed {len(found)} experiment(s)"
               + (f": {', '.join(e.name for e in found)}" if found else ""))


def register(app: typer.Typer) -> None:
    """Add the experiment commands."""
    app.add_typer(exp_app, name="exp")
