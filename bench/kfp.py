"""W10: `mlbuild export kfp` of a 1,000-stage pipeline (compile with the kfp SDK, write the
IR YAML); the target is <= 5 s."""

from __future__ import annotations

from bench.context import Ctx
from bench.measure import BenchError, Series
from bench.report import Row, Target
from bench.synthetic import layered


def _remote_config(ctx: Ctx) -> str:
    """.dvc/config naming an absolute local-directory remote (a relative one is refused)."""
    remote = ctx.workdir("w10-remote")
    return f"[core]\n    remote = shared\n['remote \"shared\"']\n    url = {remote}\n"


def w10(ctx: Ctx) -> list[Row]:
    """1,000 stages exported to KFP, `ctx.reps` times on the same committed project."""
    layers, width = ctx.sizes.w6_layers, ctx.sizes.w6_width
    n = layers * width
    files = layered(layers, width)
    files[".dvc/config"] = _remote_config(ctx)
    proj = ctx.template("w10", files)
    out = ctx.workdir("w10-out") / "pipeline.yaml"
    argv = ctx.mlbuild("export", "kfp", "-o", str(out), "--repo", str(proj),
                       "--image", "registry.example/mlbuild-task:1")
    series = Series()
    for rep in range(ctx.reps):
        ctx.log(f"  W10 rep {rep + 1}/{ctx.reps}: mlbuild export kfp ({n} stages)")
        ctx.timed(argv, proj, series)
        tasks = out.read_text().count("\n        taskInfo:\n")
        if tasks != n:
            raise BenchError(f"W10: the pipeline holds {tasks} tasks, expected {n}")
    return [Row("W10", f"`mlbuild export kfp` of {n} stages ({layers}x{width}; IR YAML "
                "through the kfp SDK)", series, None, Target("abs", 5.0))]
