"""W5: the example pipeline embedded in this repository (prepare -> train -> evaluate)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import Ctx, mtime, run_cycle, tool_order
from bench.measure import BenchError, Series
from bench.projects import commit_all, fresh_copy, init_repo, quiet_dvc, remove_tree
from bench.report import Row, Target

REPO = Path(__file__).resolve().parents[1]
COPY_DIRS = ("configs", "stages", "dvc-storage", ".mlbuild")  # .mlbuild/: if it exists
COPY_FILES = ("data.dvc", "params.yaml", "dvc.yaml", ".dvcignore")
OLD_LR, NEW_LR = "learning_rate: 0.1\n", "learning_rate: 0.05\n"


def _template(ctx: Ctx) -> Path:
    """Fresh git + dvc repo holding the example, with its raw data pulled."""
    tpl = ctx.workdir("w5")
    init_repo(ctx.runner, ctx.tools, tpl, {})
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPY_DIRS:
        if name == ".mlbuild" and not (REPO / name).is_dir():
            continue
        shutil.copytree(REPO / name, tpl / name, ignore=skip)
    for name in (*COPY_FILES, ".dvc/config"):
        shutil.copyfile(REPO / name, tpl / name)
    quiet_dvc(ctx.runner, ctx.tools, tpl)
    ctx.log("  W5: dvc pull data.dvc (untimed) so that both tools start with the raw data")
    ctx.runner.run(ctx.dvc("pull", "-q", "data.dvc"), tpl)
    commit_all(ctx.runner, tpl, "bench: example")
    if OLD_LR not in (tpl / "params.yaml").read_text(encoding="utf-8"):
        raise BenchError(f"params.yaml of the example has no '{OLD_LR.strip()}' to change")
    return tpl


def _edit_params(proj: Path) -> None:
    path = proj / "params.yaml"
    text = path.read_text(encoding="utf-8")
    if text.count(OLD_LR) != 1:
        raise BenchError(f"expected exactly one '{OLD_LR.strip()}' in {path}")
    path.write_text(text.replace(OLD_LR, NEW_LR), encoding="utf-8")


def w5(ctx: Ctx) -> list[Row]:
    """Cold build, no-op build, no-op status and a one-param change."""
    tpl = _template(ctx)
    steps = {
        "mlbuild": {"cold": ctx.mlbuild("run"), "noop": ctx.mlbuild("run"),
                    "status": ctx.mlbuild("status")},
        "dvc": {"cold": ctx.dvc("repro"), "noop": ctx.dvc("repro"), "status": ctx.dvc("status")},
    }
    keys = ("cold", "noop", "status", "param")
    series = {f"{k}:{t}": Series() for k in keys for t in ("mlbuild", "dvc")}
    for rep in range(ctx.reps):
        for tool in tool_order(rep):
            ctx.log(f"  W5 rep {rep + 1}/{ctx.reps}: {tool}")
            proj = fresh_copy(tpl, ctx.scratch / "w5-proj")
            try:
                run_cycle(ctx, proj, tool, steps[tool], series)
                before = mtime(proj / "dvc.lock")
                if tool == "mlbuild":
                    argv = ctx.mlbuild("run", "model.learning_rate=0.05")
                else:
                    _edit_params(proj)
                    argv = ctx.dvc("repro")
                ctx.timed(argv, proj, series[f"param:{tool}"])
                if mtime(proj / "dvc.lock") == before:
                    raise BenchError(f"{tool}: the param change did not update dvc.lock")
            finally:
                remove_tree(proj)
    remove_tree(tpl)
    return [
        Row("W5", "cold build (`mlbuild run` vs `dvc repro`)",
            series["cold:mlbuild"], series["cold:dvc"], Target("ratio", 0.9)),
        Row("W5", "no-op build (`mlbuild run` vs `dvc repro`)",
            series["noop:mlbuild"], series["noop:dvc"]),
        Row("W5", "no-op status (`mlbuild status` vs `dvc status`)",
            series["status:mlbuild"], series["status:dvc"]),
        Row("W5", "one-param change: `mlbuild run model.learning_rate=0.05` vs "
            "edit params.yaml + `dvc repro`", series["param:mlbuild"], series["param:dvc"],
            note="mlbuild also recomposes params.yaml from configs/ via Hydra"),
    ]
