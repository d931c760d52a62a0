"""W9: tracking a dataset of many small files (`mlbuild data add` vs `dvc add`), then the
status after changing a few of them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.context import MIB, Ctx, tool_order
from bench.measure import BenchError, Result, Series
from bench.projects import fresh_copy, init_repo, remove_tree
from bench.report import Row, Target

CHANGED = 10  # files edited before the timed status


def _dataset(top: Path, files: int, total: int) -> list[str]:
    """*files* random files of about total/files bytes in 100 folders; their relpaths."""
    size = max(1, total // files)
    names = []
    for i in range(files):
        rel = f"class{i % 100:03d}/item{i:06d}.bin"
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        names.append(rel)
    return names


def _edit(proj: Path, names: list[str]) -> list[str]:
    """Change CHANGED files spread over the dataset; their project-relative paths."""
    step = max(1, len(names) // CHANGED)
    edited = [f"data/{rel}" for rel in names[::step][:CHANGED]]
    for rel in edited:
        with open(proj / rel, "r+b") as fobj:
            fobj.write(b"changed!")
    return edited


def _check_status(res: Result, tool: str, edited: list[str]) -> None:
    """mlbuild must name every edited file; DVC must at least see the directory modified."""
    text = res.stdout + res.stderr
    missing = [rel for rel in edited if rel not in text] if tool == "mlbuild" else []
    if missing or "modified" not in text:
        raise BenchError(f"{tool} status after editing {len(edited)} files does not report "
                         f"them (missing: {missing[:3]}):\n{text[-2000:]}")


def w9(ctx: Ctx) -> list[Row]:
    """`data add` of a directory of many files, and status after changing ten of them."""
    files, total = ctx.sizes.w9_files, ctx.sizes.w9_bytes
    root = ctx.workdir("w9")
    if shutil.disk_usage(root).free < 6 * total + 512 * MIB:
        raise BenchError(f"W9 needs about {6 * total / MIB:.0f} MiB free in {root}")
    ctx.log(f"  W9: writing {files:,} files, {total / MIB:.0f} MiB in all")
    names = _dataset(root / "src", files, total)
    tpl = root / "tpl"
    init_repo(ctx.runner, ctx.tools, tpl, {"README": "W9\n"})
    argv = {"mlbuild": (ctx.mlbuild("data", "add", "data"), ctx.mlbuild("status")),
            "dvc": (ctx.dvc("add", "data"), ctx.dvc("status"))}
    add = {tool: Series() for tool in argv}
    status = {tool: Series() for tool in argv}
    for rep in range(ctx.reps):
        for tool in tool_order(rep):
            ctx.log(f"  W9 rep {rep + 1}/{ctx.reps}: {tool}")
            proj = fresh_copy(tpl, root / "proj")
            try:
                shutil.copytree(root / "src", proj / "data")
                ctx.runner.run(["sync"], root)
                ctx.timed(argv[tool][0], proj, add[tool])
                if not (proj / "data.dvc").is_file():
                    raise BenchError(f"{tool}: no data.dvc after adding the dataset")
                edited = _edit(proj, names)
                ctx.runner.run(["sync"], root)
                _check_status(ctx.timed(argv[tool][1], proj, status[tool]), tool, edited)
            finally:
                remove_tree(proj)
    remove_tree(root)
    shape = f"{files:,} files, {total / MIB / 1024:.2g} GiB"
    return [
        Row("W9", f"`mlbuild data add` vs `dvc add` of a directory ({shape})",
            add["mlbuild"], add["dvc"], Target("ratio", 0.3)),
        Row("W9", "peak RSS of the add", Series(list(add["mlbuild"].rss_mb), unit="MB"),
            Series(list(add["dvc"].rss_mb), unit="MB"), Target("ratio", 0.5, "MB")),
        Row("W9", f"status after changing {CHANGED} of the files (`mlbuild status` vs "
            "`dvc status`)", status["mlbuild"], status["dvc"], Target("ratio", 0.2),
            note=f"mlbuild's output names all {CHANGED} files (checked)"),
    ]
