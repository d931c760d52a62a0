"""W7: a six-variant sweep of the example, `mlbuild exp run -j 2` against DVC's queue."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.context import Ctx, tool_order
from bench.example import REPO, _template
from bench.measure import BenchError, Series
from bench.projects import commit_all, fresh_copy, remove_tree
from bench.report import Row

GRID = ("model.learning_rate=0.05,0.1,0.2", "model.n_estimators=30,60")
VARIANTS = 6
POLL = 0.5  # seconds between `dvc queue status` polls


def _exp_refs(ctx: Ctx, proj: Path) -> int:
    out = ctx.runner.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], proj)
    return sum(1 for line in out.stdout.splitlines() if line.count("/") == 4)


def _mlbuild(ctx: Ctx, proj: Path, series: Series) -> None:
    res = ctx.timed(ctx.mlbuild("exp", "run", *GRID, "-j", "2"), proj, series)
    if _exp_refs(ctx, proj) != VARIANTS:
        raise BenchError(f"mlbuild exp run left {_exp_refs(ctx, proj)} experiments, not "
                         f"{VARIANTS}:\n{res.stdout[-2000:]}")


def _dvc(ctx: Ctx, proj: Path, series: Series) -> None:
    """Queue the grid, start two workers and wait until every experiment has finished."""
    start = time.perf_counter()
    queue = [ctx.dvc("exp", "run", "--queue", *(a for g in GRID for a in ("-S", g)))]
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
    if "Failed" in status or _exp_refs(ctx, proj) != VARIANTS:
        raise BenchError(f"dvc's queue did not finish all {VARIANTS} experiments:\n{status}")


def _sweep_template(ctx: Ctx) -> Path:
    """W5's template with the raw data ignored by git, as in the repository (DVC's queue
    refuses to run when git tracks a .dvc-tracked path)."""
    tpl = _template(ctx)
    ctx.runner.run(["git", "rm", "-r", "-q", "--cached", "data/raw"], tpl)
    shutil.copyfile(REPO / "data" / ".gitignore", tpl / "data" / ".gitignore")
    commit_all(ctx.runner, tpl, "bench: raw data ignored by git")
    return tpl


def w7(ctx: Ctx) -> list[Row]:
    """The six-variant grid of the issue, from an unbuilt example, two at a time."""
    tpl = _sweep_template(ctx)
    series = {"mlbuild": Series(), "dvc": Series()}
    for rep in range(ctx.reps):
        for tool in tool_order(rep):
            ctx.log(f"  W7 rep {rep + 1}/{ctx.reps}: {tool}")
            proj = fresh_copy(tpl, ctx.scratch / "w7-proj")
            try:
                (_mlbuild if tool == "mlbuild" else _dvc)(ctx, proj, series[tool])
            finally:
                ctx.runner.run(ctx.dvc("queue", "stop", "--kill"), proj, check=False)
                remove_tree(proj)
    remove_tree(tpl)
    return [Row("W7", "6-variant sweep, 2 at a time (`mlbuild exp run -j 2` vs `dvc exp run "
                "--queue` + `dvc queue start -j 2`, until all finished)",
                series["mlbuild"], series["dvc"],
                note="DVC's time includes polling `dvc queue status` every 0.5 s")]
