"""W7: sweeps of the example, `mlbuild exp run -j 2` against DVC's queue, and `exp show`.

The six-variant grid is the issue's. The twelve-variant one adds `model=lightgbm,logreg`:
the learning rate and the number of trees are keys of the lightgbm config only, so mlbuild
builds six lightgbm variants and one logreg variant (see mlbuild/experiments/conditional.py),
while DVC, which applies `-S` in Hydra's struct mode, is given the same grid with `++` on
those keys (DVC's Hydra composition, `hydra.enabled`): twelve experiments, the logreg ones
carrying two keys logreg ignores.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.context import Ctx, tool_order
from bench.example import REPO, _template
from bench.expshow import exp_show
from bench.measure import BenchError, Series
from bench.projects import commit_all, fresh_copy, remove_tree
from bench.report import Row, Target

GRID = ("model.learning_rate=0.05,0.1,0.2", "model.n_estimators=30,60")
VARIANTS = 6
GRID12 = (*GRID, "model=lightgbm,logreg")
VARIANTS12 = 7  # 6 lightgbm + 1 logreg: logreg has no learning rate or number of trees
DVC_GRID12 = ("++model.learning_rate=0.05,0.1,0.2", "++model.n_estimators=30,60",
              "model=lightgbm,logreg")
POLL = 0.5  # seconds between `dvc queue status` polls


def _exp_refs(ctx: Ctx, proj: Path) -> int:
    out = ctx.runner.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], proj)
    return sum(1 for line in out.stdout.splitlines() if line.count("/") == 4)


@dataclass(frozen=True)
class _Grid:
    """One sweep: what each tool is given and how many experiments it must leave."""

    mine: tuple[str, ...]
    mine_count: int
    dvc: tuple[str, ...]
    dvc_count: int
    hydra: bool = False  # DVC composes params.yaml from configs/ (needed for a group sweep)


SIX = _Grid(GRID, VARIANTS, GRID, VARIANTS)
TWELVE = _Grid(GRID12, VARIANTS12, DVC_GRID12, 12, hydra=True)


def _mlbuild(ctx: Ctx, proj: Path, series: Series, grid: _Grid) -> None:
    res = ctx.timed(ctx.mlbuild("exp", "run", *grid.mine, "-j", "2"), proj, series)
    if _exp_refs(ctx, proj) != grid.mine_count:
        raise BenchError(f"mlbuild exp run left {_exp_refs(ctx, proj)} experiments, not "
                         f"{grid.mine_count}:\n{res.stdout[-2000:]}")


def _dvc(ctx: Ctx, proj: Path, series: Series, grid: _Grid) -> None:
    """Queue the grid, start two workers and wait until every experiment has finished."""
    if grid.hydra:  # untimed set-up, committed: DVC's queue runs the committed tree
        ctx.runner.run(ctx.dvc("config", "hydra.enabled", "true"), proj)
        ctx.runner.run(ctx.dvc("config", "hydra.config_dir", "configs"), proj)
        commit_all(ctx.runner, proj, "bench: DVC composes params.yaml with Hydra")
    start = time.perf_counter()
    queue = [ctx.dvc("exp", "run", "--queue", *(a for g in grid.dvc for a in ("-S", g)))]
    for argv in [*queue, ctx.dvc("queue", "start", "-j", "2")]:
        ctx.runner.run(argv, proj)
    while True:
        status = ctx.runner.run(ctx.dvc("queue", "status"), proj).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        if time.perf_counter() - start > ctx.runner.timeout:
            raise BenchError(f"dvc's queue did not finish:\n{status}")
        time.sleep(POLL)
    series.add(time.perf_counter() - start, None, None)
    if "Failed" in status or _exp_refs(ctx, proj) != grid.dvc_count:
        raise BenchError(f"dvc's queue did not finish all {grid.dvc_count} experiments:"
                         f"\n{status}")


def _sweep_template(ctx: Ctx) -> Path:
    """W5's template with the raw data ignored by git, as in the repository (DVC's queue
    refuses to run when git tracks a .dvc-tracked path)."""
    tpl = _template(ctx)
    ctx.runner.run(["git", "rm", "-r", "-q", "--cached", "data/raw"], tpl)
    shutil.copyfile(REPO / "data" / ".gitignore", tpl / "data" / ".gitignore")
    commit_all(ctx.runner, tpl, "bench: raw data ignored by git")
    return tpl


def _sweeps(ctx: Ctx, tpl: Path, grid: _Grid, label: str) -> dict[str, Series]:
    series = {"mlbuild": Series(), "dvc": Series()}
    for rep in range(ctx.reps):
        for tool in tool_order(rep):
            ctx.log(f"  W7 {label} rep {rep + 1}/{ctx.reps}: {tool}")
            proj = fresh_copy(tpl, ctx.scratch / "w7-proj")
            try:
                (_mlbuild if tool == "mlbuild" else _dvc)(ctx, proj, series[tool], grid)
            finally:
                ctx.runner.run(ctx.dvc("queue", "stop", "--kill"), proj, check=False)
                remove_tree(proj)
    return series


def w7(ctx: Ctx) -> list[Row]:
    """The issue's two grids from an unbuilt example, two at a time; then `exp show` with
    200 experiments."""
    tpl = _sweep_template(ctx)
    try:
        six = _sweeps(ctx, tpl, SIX, "6-variant")
        twelve = _sweeps(ctx, tpl, TWELVE, "12-variant")
        show = exp_show(ctx, tpl)
    finally:
        remove_tree(tpl)
    note = "DVC's time includes polling `dvc queue status` every 0.5 s"
    return [Row("W7", "6-variant sweep, 2 at a time (`mlbuild exp run -j 2` vs `dvc exp run "
                "--queue` + `dvc queue start -j 2`, until all finished)",
                six["mlbuild"], six["dvc"], Target("ratio", 0.5), note=note),
            Row("W7", "12-variant sweep adding `model=lightgbm,logreg`, 2 at a time (mlbuild "
                f"builds {VARIANTS12}: logreg has no learning rate or tree count; DVC, with "
                "Hydra and `++` on those keys, 12)", twelve["mlbuild"], twelve["dvc"],
                Target("ratio", 0.5), note=note),
            show]
