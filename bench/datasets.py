"""W3 and W4: the cost of committing outputs (one big file; a directory of many files)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.context import MIB, Ctx, dvc_yaml, run_cycle, tool_order
from bench.measure import BenchError, Series
from bench.projects import commit_all, fresh_copy, init_repo, remove_tree
from bench.report import Row, Target, fmt


def _write_random(path: Path, size: int) -> None:
    chunk = 8 * MIB
    with open(path, "wb") as fobj:
        left = size
        while left > 0:
            fobj.write(os.urandom(min(chunk, left)))
            left -= chunk


def _commit(total: Series, bare: Series) -> Series:
    """Per-rep (stage run time minus bare command time), keeping the run's peak RSS."""
    out = Series()
    for run, cmd, rss in zip(total.values, bare.values, total.rss_mb, strict=True):
        out.add(run - cmd, rss)
    out.cpu = [run - cmd for run, cmd in zip(total.cpu, bare.cpu, strict=True)]
    return out


def w3(ctx: Ctx) -> list[Row]:
    """One stage with a big output file: commit overhead against md5sum."""
    size = ctx.sizes.w3_bytes
    human = f"{size / 1024 / MIB:g} GiB" if size >= 1024 * MIB else f"{size / MIB:g} MiB"
    root = ctx.workdir("w3")
    need = 4 * size + 256 * MIB
    free = shutil.disk_usage(root).free
    if free < need:
        raise BenchError(f"W3 needs {need / MIB:.0f} MiB free in {root}, only "
                         f"{free / MIB:.0f} MiB available")
    ctx.log(f"  W3: writing {human} of random data ({free / 1024 / MIB:.0f} GiB free)")
    _write_random(root / "data.bin", size)
    cmd = "cp ../data.bin big"
    stage: dict[str, dict[str, object]] = {"copy": {"cmd": cmd, "outs": ["big"]}}
    tpl = root / "tpl"
    init_repo(ctx.runner, ctx.tools, tpl, {"dvc.yaml": dvc_yaml(stage)})
    bare_dir = root / "bare"
    bare_dir.mkdir()
    cp, md5, dvcadd = Series(label="cp"), Series(label="md5sum"), Series(label="dvc add")
    total = {"mlbuild": Series(), "dvc": Series()}
    cp_for = {"mlbuild": Series(), "dvc": Series()}
    build = {"mlbuild": ctx.mlbuild("run"), "dvc": ctx.dvc("repro")}
    for rep in range(ctx.reps):
        ctx.log(f"  W3 rep {rep + 1}/{ctx.reps}")
        ctx.timed(["sh", "-c", cmd], bare_dir, cp)
        remove_tree(bare_dir / "big")
        ctx.runner.run(["sync"], root)
        ctx.timed(["md5sum", "data.bin"], root, md5)
        for tool in tool_order(rep):
            proj = fresh_copy(tpl, root / "proj")
            try:
                run_cycle(ctx, proj, tool, {"cold": build[tool]}, {f"cold:{tool}": total[tool]})
                cp_for[tool].add(cp.values[-1], cpu=cp.cpu[-1])
            finally:
                remove_tree(proj)
                ctx.runner.run(["sync"], root)
        proj = fresh_copy(tpl, root / "proj")
        try:
            shutil.copyfile(root / "data.bin", proj / "added.bin")
            ctx.runner.run(["sync"], root)
            ctx.timed(ctx.dvc("add", "added.bin"), proj, dvcadd)
        finally:
            remove_tree(proj)
            ctx.runner.run(["sync"], root)
    remove_tree(root)
    commit = {tool: _commit(total[tool], cp_for[tool]) for tool in total}
    add_ratio = dvcadd.median / md5.median if md5.values else float("nan")
    return [
        Row("W3", f"stage run, {human} output (`mlbuild run` vs `dvc repro`)",
            total["mlbuild"], total["dvc"], note=f"bare `cp`: {fmt(cp.median, 's')}"),
        Row("W3", "commit time = stage run − bare `cp`", commit["mlbuild"], commit["dvc"]),
        Row("W3", "mlbuild commit vs `md5sum` of the same file (floor)",
            commit["mlbuild"], md5, Target("ratio", 1.3)),
        Row("W3", "`dvc add` of the same file (reference)", None, dvcadd,
            note=f"dvc add / md5sum = {add_ratio:.2f}"),
    ]


def _small_files(top: Path, n: int) -> None:
    """*n* small files, as the Python stage of W4 writes them."""
    top.mkdir(parents=True)
    for i in range(n):
        (top / f"f{i:05d}.txt").write_text(str(i))


def w4(ctx: Ctx) -> list[Row]:
    """A stage making a directory of many small files: by a Python one-liner (commit, no-op
    build and status) and by `cp -r` of the same files (commit only)."""
    n = ctx.sizes.w4_files
    root = ctx.workdir("w4")
    _small_files(root / "src", n)
    py = ("python -c \"import pathlib; d = pathlib.Path('many'); d.mkdir(); "
          f"[(d / f'f{{i:05d}}.txt').write_text(str(i)) for i in range({n})]\"")
    rows = _w4_variant(ctx, root, "python", py, with_noop=True)
    rows += _w4_variant(ctx, root, "cp", "cp -r ../src many", with_noop=False)
    rows += _w4_variant(ctx, root, "cp-hardlink", "cp -r ../src many", with_noop=False)
    remove_tree(root)
    return rows


def _w4_variant(ctx: Ctx, root: Path, kind: str, cmd: str, with_noop: bool) -> list[Row]:
    """One W4 stage command, run bare and by both tools in each repetition."""
    n = ctx.sizes.w4_files
    stage: dict[str, dict[str, object]] = {
        "many": {"cmd": cmd, "deps": ["seed.txt"], "outs": ["many"]},
    }
    tpl = root / f"tpl-{kind}"
    init_repo(ctx.runner, ctx.tools, tpl, {"seed.txt": "seed\n", "dvc.yaml": dvc_yaml(stage)})
    if kind.endswith("-hardlink"):  # both tools commit by hard link (DVC's cache.type)
        ctx.runner.run([ctx.tools.dvc, "config", "cache.type", "hardlink"], tpl)
        commit_all(ctx.runner, tpl, "bench: cache.type hardlink")
    bare_dir = root / f"bare-{kind}"
    bare_dir.mkdir()
    bare = Series()
    keys = ("cold", "noop", "status") if with_noop else ("cold",)
    series = {f"{k}:{t}": Series() for k in keys for t in ("mlbuild", "dvc")}
    bare_for = {"mlbuild": Series(), "dvc": Series()}
    every = {"mlbuild": {"cold": ctx.mlbuild("run"), "noop": ctx.mlbuild("run"),
                         "status": ctx.mlbuild("status")},
             "dvc": {"cold": ctx.dvc("repro"), "noop": ctx.dvc("repro"),
                     "status": ctx.dvc("status")}}
    steps = {tool: {k: every[tool][k] for k in keys} for tool in every}
    for rep in range(ctx.reps):
        ctx.log(f"  W4 ({kind}) rep {rep + 1}/{ctx.reps}")
        ctx.runner.run(["sync"], root)
        ctx.timed(["sh", "-c", cmd], bare_dir, bare)
        remove_tree(bare_dir / "many")
        for tool in tool_order(rep):
            proj = fresh_copy(tpl, root / "proj")
            try:
                ctx.runner.run(["sync"], root)  # no dirty pages of the last step meanwhile
                run_cycle(ctx, proj, tool, steps[tool], series)
                bare_for[tool].add(bare.values[-1], cpu=bare.cpu[-1])
            finally:
                remove_tree(proj)
    remove_tree(tpl)
    commit = {tool: _commit(series[f"cold:{tool}"], bare_for[tool]) for tool in bare_for}
    what = {"python": "Python stage", "cp": "`cp -r` stage",
            "cp-hardlink": "`cp -r` stage, cache.type hardlink"}[kind]
    rows = [
        Row("W4", f"{what}: run, dir of {n:,} files (`mlbuild run` vs `dvc repro`)",
            series["cold:mlbuild"], series["cold:dvc"],
            note=f"bare command: {fmt(bare.median, 's')}"),
        Row("W4", f"{what}: commit time = stage run − bare command", commit["mlbuild"],
            commit["dvc"], Target("ratio", 0.25)),
    ]
    if with_noop:
        rows += [
            Row("W4", "no-op build (`mlbuild run` vs `dvc repro`)",
                series["noop:mlbuild"], series["noop:dvc"]),
            Row("W4", "no-op status (`mlbuild status` vs `dvc status`)",
                series["status:mlbuild"], series["status:dvc"], Target("ratio", 0.15)),
        ]
    return rows
