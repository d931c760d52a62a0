"""W8: the example's model served by `mlbuild serve` and by `mlflow models serve`, side by side.

Both serve the same pickled Pipeline that the example's `mlbuild run` builds: mlbuild from
the project (`mlbuild serve models/model.pkl`, the input contract checked on every request),
MLflow from the same object saved with its sklearn flavour (`code_paths`: the project's
`stages` package, which the pipeline's first step comes from), one worker each. The same
load generator (bench/loadgen.py, 127.0.0.1 only) sends MLflow-format `/invocations`
requests built from data/raw/test.csv: one row, then 100 rows, from 8 keep-alive clients;
then 50 clients for 30 s (the soak). Servers are started in their own session and stopped by
their process id.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.context import Ctx
from bench.example import REPO, _template
from bench.measure import BenchError, Series
from bench.projects import commit_all, remove_tree
from bench.report import Row, Target

LOADGEN = Path(__file__).with_name("loadgen.py")
SAVE_MLFLOW = """
import pickle, sys
import mlflow.sklearn
model = pickle.loads(open(sys.argv[1], "rb").read())
mlflow.sklearn.save_model(model, sys.argv[2], code_paths=[sys.argv[3]],
                          serialization_format="pickle")
"""
SERVERS = ("mlbuild", "mlflow")
READY_TIMEOUT = 180.0


def _bodies(test_csv: Path, rows: int) -> list[str]:
    """MLflow `dataframe_split` bodies of *rows* rows each, cycling through the file."""
    with test_csv.open(newline="") as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        data = [[int(v) for v in row] for row in reader]
    count = max(1, len(data) // rows) if rows > 1 else len(data)
    out = []
    for i in range(count):
        chunk = [data[(i * rows + j) % len(data)] for j in range(rows)]
        out.append(json.dumps({"dataframe_split": {"columns": columns, "data": chunk}}))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.5)
    return False


@contextlib.contextmanager
def _server(ctx: Ctx, argv: list[str], cwd: Path, port: int, log: Path) -> Iterator[int]:
    """A server process, ready; yields its pid; SIGTERM to its own group at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=ctx.runner.env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not _ready(port, proc):
            tail = log.read_text(errors="replace")[-1500:]
            raise BenchError(f"{' '.join(argv)} did not become ready on port {port}:\n{tail}")
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _load(ctx: Ctx, cwd: Path, port: int, pid: int, bodies: Path, **opts: Any) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), "--port", str(port), "--bodies", str(bodies),
            "--pid", str(pid), *[x for k, v in opts.items() for x in (f"--{k}", str(v))]]
    res = ctx.runner.run(argv, cwd, timeout=600)
    return dict(json.loads(res.stdout))


def _prepare(ctx: Ctx) -> tuple[Path, Path, dict[str, Path]]:
    """The built example, the MLflow model directory, and the request body files."""
    tpl = _template(ctx)
    shutil.copyfile(REPO / "mlbuild.yaml", tpl / "mlbuild.yaml")  # its serving: contract
    commit_all(ctx.runner, tpl, "bench: project settings")
    ctx.log("  W8: mlbuild run (untimed) to build the model both servers serve")
    ctx.runner.run(ctx.mlbuild("run"), tpl)
    mlflow_dir = ctx.workdir("w8-mlflow") / "model"
    bodies = {}
    for name, rows in (("single", 1), ("batch", 100)):
        bodies[name] = ctx.scratch / f"w8-{name}.json"
        bodies[name].write_text(json.dumps(_bodies(tpl / "data/raw/test.csv", rows)))
    return tpl, mlflow_dir, bodies


def _save_mlflow(ctx: Ctx, server: str, tpl: Path, mlflow_dir: Path) -> None:
    """The same pipeline in MLflow's sklearn flavour ('pip install -e .[bench]')."""
    del server
    ctx.runner.run([sys.executable, "-c", SAVE_MLFLOW, str(tpl / "models/model.pkl"),
                    str(mlflow_dir), str(tpl / "stages")], tpl)


def _argv(ctx: Ctx, server: str, mlflow_dir: Path, port: int) -> list[str]:
    if server == "mlbuild":
        return ctx.mlbuild("serve", "models/model.pkl", "--port", str(port), "--workers", "1")
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return [mlflow, "models", "serve", "-m", str(mlflow_dir), "--env-manager", "local",
            "--workers", "1", "-p", str(port), "-h", "127.0.0.1"]


KEYS = {  # series key -> unit
    "single_ms": "ms", "single_p50": "ms", "single_p99": "ms",
    "batch_ms": "ms", "batch_p50": "ms", "batch_p99": "ms", "errors": "errors",
    "soak_errors": "errors", "soak_growth": "%", "soak_rss": "MB", "soak_rps": "req/s",
}


def _record(series: dict[str, Series], server: str, phase: str, out: dict[str, Any]) -> int:
    """Add one phase's numbers; returns its errors (warm-up included)."""
    rps = out["rps"]
    series[f"{phase}_ms:{server}"].add(1000.0 / rps if rps else float("nan"))
    series[f"{phase}_ms:{server}"].label = f"{rps:.0f} req/s"
    series[f"{phase}_p50:{server}"].add(out["p50_ms"])
    series[f"{phase}_p99:{server}"].add(out["p99_ms"])
    return int(out["errors"] + out["warmup_errors"])


def _answer(port: int, body: str) -> list[Any]:
    """The predictions one request gets (MLflow's response form: {"predictions": [...]})."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return list(json.loads(resp.read())["predictions"])


def _round(ctx: Ctx, server: str, tpl: Path, mlflow_dir: Path, bodies: dict[str, Path],
           series: dict[str, Series], answers: dict[str, list[Any]]) -> None:
    """One repetition against one server: single rows, then 100-row batches."""
    port = _free_port()
    log = ctx.scratch / f"w8-{server}.log"
    errors = 0
    with _server(ctx, _argv(ctx, server, mlflow_dir, port), tpl, port, log) as pid:
        answers[server] = _answer(port, json.loads(bodies["batch"].read_text())[0])
        for phase, count in (("single", ctx.sizes.w8_single), ("batch", ctx.sizes.w8_batch)):
            out = _load(ctx, tpl, port, pid, bodies[phase], clients=8, requests=count,
                        warmup=max(20, count // 10))
            errors += _record(series, server, phase, out)
            ctx.log(f"  W8 {server} {phase}: {out['rps']:.0f} req/s, p50 {out['p50_ms']:.1f} ms,"
                    f" p99 {out['p99_ms']:.1f} ms, errors {out['errors']}")
    series[f"errors:{server}"].add(errors)


def _soak(ctx: Ctx, server: str, tpl: Path, mlflow_dir: Path, bodies: dict[str, Path],
          series: dict[str, Series]) -> None:
    """50 clients for the soak's seconds: errors, and memory after warm-up vs at the end."""
    port = _free_port()
    log = ctx.scratch / f"w8-{server}-soak.log"
    with _server(ctx, _argv(ctx, server, mlflow_dir, port), tpl, port, log) as pid:
        out = _load(ctx, tpl, port, pid, bodies["single"], clients=50, requests=10**7,
                    warmup=500, seconds=ctx.sizes.w8_soak)
    warm, end = out["rss_warm_mb"], out["rss_end_mb"]
    series[f"soak_errors:{server}"].add(out["errors"] + out["warmup_errors"])
    series[f"soak_growth:{server}"].add(100.0 * (end - warm) / warm if warm else float("nan"))
    series[f"soak_rss:{server}"].add(end)
    series[f"soak_rps:{server}"].add(out["rps"])
    ctx.log(f"  W8 {server} soak: {out['requests']} requests, {out['rps']:.0f} req/s, errors "
            f"{out['errors']}, RSS {warm:.0f} -> {end:.0f} MB")


def w8(ctx: Ctx) -> list[Row]:
    """mlbuild serve vs mlflow models serve: throughput, latency, errors, memory."""
    tpl, mlflow_dir, bodies = _prepare(ctx)
    series = {f"{k}:{s}": Series(unit=u) for k, u in KEYS.items() for s in SERVERS}
    down: set[str] = set()
    _guarded(ctx, "mlflow", down, _save_mlflow, tpl, mlflow_dir)
    answers: dict[str, list[Any]] = {}
    for rep in range(ctx.reps):
        for server in (SERVERS if rep % 2 == 0 else SERVERS[::-1]):
            if server not in down:
                _guarded(ctx, server, down, _round, tpl, mlflow_dir, bodies, series, answers)
    if len(answers) == 2 and answers["mlbuild"] != answers["mlflow"]:
        raise BenchError("W8: the two servers answer the same 100 rows differently: "
                         f"{answers['mlbuild'][:10]} vs {answers['mlflow'][:10]}")
    for server in SERVERS:
        if server not in down:
            _guarded(ctx, server, down, _soak, tpl, mlflow_dir, bodies, series)
    remove_tree(tpl)
    return _rows(series)


def _guarded(ctx: Ctx, server: str, down: set[str], step: Any, *args: Any) -> None:
    """Run a step; a server that cannot serve is noted and left out of the rest."""
    try:
        step(ctx, server, *args)
    except BenchError as exc:
        down.add(server)
        lines = [x for x in str(exc).splitlines() if x.strip() and not x.startswith("---")]
        ctx.notes.append(f"W8: {server} not measured: {lines[0]} ... {lines[-1]}")
        ctx.log(f"  W8: {server} not measured: {exc}")


def _rows(s: dict[str, Series]) -> list[Row]:
    half = Target("ratio", 0.5)
    zero = Target("abs", 0.0, "errors")

    def row(key: str, what: str, target: Target | None = None, note: str = "") -> Row:
        return Row("W8", what, s[f"{key}:mlbuild"], s[f"{key}:mlflow"], target, note)

    return [
        row("single_ms", "1-row `/invocations`, 8 clients: ms per request (1 / throughput)",
            half, "throughput ≥ 2× MLflow's"),
        row("single_p50", "1-row: p50 latency"),
        row("single_p99", "1-row: p99 latency", half),
        row("batch_ms", "100-row `/invocations`, 8 clients: ms per request (1 / throughput)",
            half, "throughput ≥ 2× MLflow's"),
        row("batch_p50", "100-row: p50 latency"),
        row("batch_p99", "100-row: p99 latency", half),
        row("errors", "errors in the runs above (per repetition)", zero),
        row("soak_errors", "soak, 50 clients (30 s; 10 s with --quick): errors", zero),
        row("soak_rps", "soak: throughput"),
        row("soak_growth", "soak: server RSS growth after warm-up", Target("abs", 10.0, "%")),
        row("soak_rss", "soak: server RSS at the end (process tree)"),
    ]
