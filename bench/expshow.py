"""W7's table: `mlbuild exp show` against `dvc exp show` on the example with 200 experiments.

The experiments are made cheaply, as commits on the baseline under DVC's refs written by one
`git fast-import`: each changes params.yaml (a learning rate and a number of trees), dvc.lock
(the train stage's params and model hash) and metrics.json, as a built variant does.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

from bench.context import Ctx
from bench.measure import BenchError, Series
from bench.projects import commit_all, fresh_copy, remove_tree
from bench.report import Row, Target

EXPERIMENTS = 200
SHOW_REPS = 5  # exp show is quick: the median of five, whatever --reps says
LOCK = "stages:\n  train:\n    cmd: python -m stages.train\n    params:\n      params.yaml:\n" \
       "        model:\n          name: lightgbm\n          learning_rate: {lr}\n" \
       "          num_leaves: 15\n          n_estimators: {trees}\n    outs:\n" \
       "    - path: models/model.pkl\n      hash: md5\n      md5: {md5}\n      size: 1000\n"


def _files(proj: Path, index: int) -> dict[str, bytes]:
    """The files experiment *index* changes on the baseline."""
    params = (proj / "params.yaml").read_text(encoding="utf-8")
    lr, trees = round(0.01 + 0.001 * index, 4), 20 + index % 50
    params = params.replace("learning_rate: 0.1", f"learning_rate: {lr}")
    params = params.replace("n_estimators: 60", f"n_estimators: {trees}")
    md5 = hashlib.md5(str(index).encode(), usedforsecurity=False).hexdigest()
    metrics = {"accuracy": round(0.9 + index / 10_000, 5),
               "macro_f1": round(0.89 + index / 9_000, 5)}
    return {"params.yaml": params.encode(), "metrics.json": json.dumps(metrics).encode(),
            "dvc.lock": LOCK.format(lr=lr, trees=trees, md5=md5).encode()}


def _data(body: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(body), body)


def add_experiments(proj: Path, count: int = EXPERIMENTS) -> None:
    """*count* experiments of HEAD, in DVC's layout, written by one `git fast-import`."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=proj, check=True,
                          capture_output=True, text=True).stdout.strip()
    stream = bytearray()
    now = int(time.time())
    for index in range(count):
        files = _files(proj, index)
        name = f"exp-{hashlib.sha256(str(index).encode()).hexdigest()[:5]}"
        ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
        message = f"dvc: commit experiment {hashlib.sha256(name.encode()).hexdigest()}"
        stream += f"commit {ref}\ncommitter bench <bench@localhost> {now + index} +0000\n".encode()
        stream += _data(message.encode()) + f"from {head}\n".encode()
        for path, body in files.items():
            stream += f"M 100644 inline {path}\n".encode() + _data(body)
        stream += b"\n"
    subprocess.run(["git", "fast-import", "--quiet"], cwd=proj, input=bytes(stream),
                   check=True, capture_output=True)


def show_template(ctx: Ctx, tpl: Path) -> Path:
    """A copy of the sweep template with a baseline metrics.json and 200 experiments."""
    proj = fresh_copy(tpl, ctx.scratch / "w7-show")
    (proj / "metrics.json").write_text(json.dumps({"accuracy": 0.97, "macro_f1": 0.97}))
    commit_all(ctx.runner, proj, "bench: baseline metrics")
    add_experiments(proj)
    return proj


def exp_show(ctx: Ctx, tpl: Path) -> Row:
    """Median of five `exp show` calls of each tool (after one untimed call, which fills
    DVC's caches: its first call on a repository took 41 s)."""
    proj = show_template(ctx, tpl)
    series = {"mlbuild": Series(), "dvc": Series()}
    argv = {"mlbuild": ctx.mlbuild("exp", "show"),  # each tool's table, as people run it
            "dvc": ctx.dvc("exp", "show", "--no-pager")}
    try:
        for tool, command in argv.items():
            first = ctx.runner.run(command, proj)
            if first.stdout.count("\n") < EXPERIMENTS:
                raise BenchError(f"{tool} exp show listed fewer than {EXPERIMENTS} "
                                 f"experiments:\n{first.stdout[:2000]}")
            for rep in range(SHOW_REPS):
                ctx.log(f"  W7 exp show {rep + 1}/{SHOW_REPS}: {tool}")
                ctx.timed(command, proj, series[tool])
    finally:
        remove_tree(proj)
    return Row("W7", f"`exp show` (the table) with {EXPERIMENTS} experiments (warm; median "
               f"of {SHOW_REPS})", series["mlbuild"], series["dvc"], Target("abs", 0.5))
