"""W1, W2, W6: synthetic pipelines of trivial stages (pure tool overhead)."""

from __future__ import annotations

from bench.context import Ctx, dvc_yaml, expect_up_to_date, run_cycle, tool_order
from bench.measure import Series
from bench.projects import fresh_copy, remove_tree
from bench.report import Row, Target

TOOLS = ("mlbuild", "dvc")


def layered(layers: int, width: int) -> dict[str, str]:
    """*layers* x *width* stages; each copies the file of the same column one layer up.

    Layer 0 copies a per-column seed file. Every stage has one dep and one out.
    """
    files = {f"seeds/s{i:03d}.txt": f"seed {i}\n" for i in range(width)}
    stages: dict[str, dict[str, object]] = {}
    for layer in range(layers):
        for i in range(width):
            src = f"seeds/s{i:03d}.txt" if layer == 0 else f"l{layer - 1:02d}_{i:03d}.txt"
            dst = f"l{layer:02d}_{i:03d}.txt"
            stages[f"s{layer:02d}_{i:03d}"] = {"cmd": f"cp {src} {dst}", "deps": [src],
                                               "outs": [dst]}
    files["dvc.yaml"] = dvc_yaml(stages)
    return files


def _series(keys: tuple[str, ...]) -> dict[str, Series]:
    return {f"{key}:{tool}": Series() for key in keys for tool in TOOLS}


def w1(ctx: Ctx) -> list[Row]:
    """100 trivial stages: cold build, no-op build, no-op status."""
    layers, width = ctx.sizes.w1_layers, ctx.sizes.w1_width
    n = layers * width
    tpl = ctx.template("w1", layered(layers, width))
    steps = {
        "mlbuild": {"cold": ctx.mlbuild("run"), "noop": ctx.mlbuild("run"),
                    "status": ctx.mlbuild("status")},
        "dvc": {"cold": ctx.dvc("repro"), "noop": ctx.dvc("repro"), "status": ctx.dvc("status")},
    }
    series = _series(("cold", "noop", "status"))
    for rep in range(ctx.reps):
        for tool in tool_order(rep):
            ctx.log(f"  W1 rep {rep + 1}/{ctx.reps}: {tool}")
            proj = fresh_copy(tpl, ctx.scratch / "w1-proj")
            try:
                run_cycle(ctx, proj, tool, steps[tool], series)
            finally:
                remove_tree(proj)
    remove_tree(tpl)
    shape = f"{n} stages, {layers}x{width}"
    return [
        Row("W1", f"cold build ({shape}; `mlbuild run` vs `dvc repro`)",
            series["cold:mlbuild"], series["cold:dvc"], Target("ratio", 0.03)),
        Row("W1", "no-op build (`mlbuild run` vs `dvc repro`)",
            series["noop:mlbuild"], series["noop:dvc"], Target("ratio", 0.05)),
        Row("W1", "no-op status (`mlbuild status` vs `dvc status`)",
            series["status:mlbuild"], series["status:dvc"], Target("ratio", 0.15)),
    ]


def w2(ctx: Ctx) -> list[Row]:
    """Independent `sleep 1` stages: parallel cold build."""
    n = ctx.sizes.w2_stages
    stages: dict[str, dict[str, object]] = {
        f"sleep{i}": {"cmd": f"sleep 1 && echo {i} > w{i}.txt", "deps": ["seed.txt"],
                      "outs": [f"w{i}.txt"]}
        for i in range(n)
    }
    tpl = ctx.template("w2", {"seed.txt": "seed\n", "dvc.yaml": dvc_yaml(stages)})
    steps = {"mlbuild": {"cold": ctx.mlbuild("run", "-j", str(n))},
             "dvc": {"cold": ctx.dvc("repro")}}
    series = _series(("cold",))
    for rep in range(ctx.reps):
        for tool in tool_order(rep):
            ctx.log(f"  W2 rep {rep + 1}/{ctx.reps}: {tool}")
            proj = fresh_copy(tpl, ctx.scratch / "w2-proj")
            try:
                run_cycle(ctx, proj, tool, steps[tool], series)
            finally:
                remove_tree(proj)
    remove_tree(tpl)
    return [Row("W2", f"cold build, {n} independent `sleep 1` stages "
                f"(`mlbuild run -j {n}` vs `dvc repro`)",
                series["cold:mlbuild"], series["cold:dvc"], Target("abs", 1.2),
                note="≤ 1.2 s; the floor is 1 s (each stage sleeps 1 s)")]


def w6(ctx: Ctx) -> list[Row]:
    """1,000 trivial stages: no-op build time and peak memory."""
    layers, width = ctx.sizes.w6_layers, ctx.sizes.w6_width
    n = layers * width
    built = ctx.template("w6", layered(layers, width))
    cold, noop, status = Series(), Series(), Series()
    ctx.log(f"  W6: mlbuild cold build of {n} stages (once, to get a built project)")
    ctx.timed(ctx.mlbuild("run"), built, cold)
    for rep in range(ctx.reps):
        ctx.log(f"  W6 rep {rep + 1}/{ctx.reps}: mlbuild")
        run_cycle(ctx, built, "mlbuild", {"noop": ctx.mlbuild("run"),
                                          "status": ctx.mlbuild("status")},
                  {"noop:mlbuild": noop, "status:mlbuild": status})
    # DVC works on a copy of the project mlbuild built (a DVC cold build of 1,000 stages
    # takes too long). One untimed `dvc status` first fills DVC's hash state, as its own
    # build would have; it also checks that DVC agrees the pipeline is up to date.
    dvc_proj = fresh_copy(built, ctx.scratch / "w6-dvc")
    ctx.log("  W6: dvc status warm-up on a copy of the mlbuild-built project")
    expect_up_to_date(ctx.runner.run(ctx.dvc("status"), dvc_proj), "dvc")
    dnoop, dstatus = Series(), Series()
    for rep in range(ctx.w6_dvc_reps):
        ctx.log(f"  W6 rep {rep + 1}/{ctx.w6_dvc_reps}: dvc")
        run_cycle(ctx, dvc_proj, "dvc", {"noop": ctx.dvc("repro"), "status": ctx.dvc("status")},
                  {"noop:dvc": dnoop, "status:dvc": dstatus})
    remove_tree(dvc_proj)
    remove_tree(built)
    capped = f"DVC reps capped at {ctx.w6_dvc_reps}"
    return [
        Row("W6", f"no-op build ({n} stages, {layers}x{width}; `mlbuild run` vs `dvc repro`)",
            noop, dnoop, Target("abs", 2.0), note=capped),
        Row("W6", "no-op build peak RSS",
            Series(list(noop.rss_mb), unit="MB"), Series(list(dnoop.rss_mb), unit="MB"),
            Target("abs", 300, "MB"), note=capped),
        Row("W6", "no-op status (`mlbuild status` vs `dvc status`)", status, dstatus,
            note=capped),
        Row("W6", "cold build, mlbuild only (1 rep; DVC not run)", cold, None),
    ]
