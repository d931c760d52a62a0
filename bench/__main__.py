"""`python -m bench`: run the workloads with mlbuild and DVC side by side; write RESULTS.md."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from bench import machine
from bench.context import Ctx, Sizes
from bench.measure import BenchError, Runner
from bench.projects import (
    Tools,
    bench_env,
    defer_removals,
    remove_tree,
    snapshot_mlbuild,
    stop_servers,
)
from bench.report import Report, fmt, from_json, markdown, table, write
from bench.workloads import WORKLOADS

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__,
        epilog="Workloads: " + "; ".join(f"{k}: {v[0]}" for k, v in WORKLOADS.items()),
    )
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per measurement (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: smaller sizes (W3 128 MiB, W4 1,000 files, ...)")
    parser.add_argument("--only", default="",
                        help="comma-separated workloads to run, e.g. W1,W3 (default: all)")
    parser.add_argument("--w6-dvc-reps", type=int, default=1,
                        help="repetitions of DVC's no-op on W6 (default 1: it is slow)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="per-command timeout in seconds (default 1800)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default bench/RESULTS.md; "
                        "bench/out/RESULTS-quick.md with --quick)")
    parser.add_argument("--tmpdir", type=Path, default=None,
                        help="where to create the scratch directory (default: system temp)")
    parser.add_argument("--live", action="store_true",
                        help="run the installed mlbuild as it is, instead of a snapshot of "
                        "mlbuild/ taken at the start (see README)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only re-render the results file from raw samples "
                        "(bench/out/results-<mode>.json) of an earlier run")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every command")
    args = parser.parse_args(argv)
    wanted = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(WORKLOADS)}")
    args.only = wanted or list(WORKLOADS)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.reps < 1 or args.w6_dvc_reps < 1:
        parser.error("--reps and --w6-dvc-reps must be at least 1")
    if args.out is None:
        args.out = HERE / "out" / "RESULTS-quick.md" if args.quick else HERE / "RESULTS.md"
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


NOTES = [
    "Each measurement is a separate subprocess of the real CLI (`mlbuild ...` / `dvc ...`), "
    "timed wall-clock with `time.perf_counter` around `Popen` + `os.wait4`; peak RSS is "
    "`ru_maxrss` from `os.wait4` (the command and the stage commands it ran).",
    "The machine is small and shared: other engineers run test suites concurrently, so "
    "timings are noisy. Medians over repetitions damp this but do not remove it; compare "
    "the ratio (both tools measured in the same run, interleaved) rather than absolute times, "
    "and look at the CPU-time ratio, which contention distorts much less than wall time.",
    "Tools alternate which goes first in each repetition. Cold builds start from a fresh copy "
    "of the generated project (fresh `git init` + `dvc init`, no cache, no dvc.lock).",
    "mlbuild runs with its default `-j` (the CPU count) except in W2 (`-j 8`); DVC runs "
    "stages serially (`dvc repro` has no parallelism).",
]


def run_workloads(args: argparse.Namespace, scratch: Path) -> Report:
    """Snapshot mlbuild, collect the machine facts, and run every selected workload."""
    tools = Tools.find()
    snapshot, digest = None, ""
    if not args.live:
        tools, snapshot, digest = snapshot_mlbuild(tools, scratch)
    env = bench_env(scratch, snapshot)
    defer_removals(scratch / "trash")
    served = env.get("MLBUILD_SERVER", "1").strip().lower() not in ("0", "off", "no", "false")
    runner = Runner(env, timeout=args.timeout, verbose=args.verbose,
                    machine_wide=(tools.mlbuild,) if served else ())
    sizes = Sizes.quick() if args.quick else Sizes()
    ctx = Ctx(runner=runner, tools=tools, scratch=scratch, reps=args.reps, sizes=sizes,
              w6_dvc_reps=args.w6_dvc_reps, log=lambda msg: print(msg, flush=True))
    mode = "quick" if args.quick else "full"
    report = Report(mode=mode, reps=args.reps, facts=machine.facts(tools, scratch, env))
    report.facts["mlbuild's resident server"] = (
        "on (the default): after the first command, each runs in a process forked from a "
        "server that imported mlbuild already. mlbuild's CPU column is then the whole "
        "machine's busy time over the command (/proc/stat; the command is not the client's "
        "child), and its peak RSS the client's only" if served else
        "off (MLBUILD_SERVER=0): every mlbuild command starts a new interpreter")
    report.facts["mlbuild code under test"] = (
        "the installed package, live (--live)" if snapshot is None else
        f"a snapshot of mlbuild/ taken at the start (sources md5 {digest})")
    print(f"bench: {mode} mode, {args.reps} rep(s), workloads {','.join(args.only)}; "
          f"scratch {scratch}", flush=True)
    started = time.monotonic()
    loads: list[str] = []
    for name in args.only:
        title, func = WORKLOADS[name]
        print(f"{name}: {title}", flush=True)
        t0 = time.monotonic()
        try:
            rows = func(ctx)
        except BenchError as exc:
            report.errors.append(f"{name}: {exc}")
            print(f"{name}: FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        except Exception:
            report.errors.append(f"{name}: internal error\n{traceback.format_exc()}")
            print(f"{name}: INTERNAL ERROR\n{traceback.format_exc()}", file=sys.stderr,
                  flush=True)
            continue
        report.rows.extend(rows)
        print(table(rows), flush=True)
        print(f"{name}: done in {fmt(time.monotonic() - t0, 's')}", flush=True)
        loads.append(f"{name} {machine.load()}")
    report.facts["load average at end (1/5/15 min)"] = machine.load()
    report.facts["benchmark wall time"] = fmt(time.monotonic() - started, "s")
    quick = ["**Quick mode**: reduced sizes; targets are indicative only."] if args.quick else []
    report.notes = [*quick, *NOTES, f"Sizes: {sizes}.",
                    "Load average (1/5/15 min) at the end of each workload: "
                    + "; ".join(loads) + ".", *ctx.notes]
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads, write the results; return the exit code."""
    args = parse_args(argv)
    if args.render:
        report = from_json(args.render.read_text(encoding="utf-8"))
        args.out.write_text(markdown(report), encoding="utf-8")
        print(f"bench: wrote {args.out}")
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-bench-", dir=args.tmpdir))
    try:
        report = run_workloads(args, scratch)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_servers(scratch)
        defer_removals(None)
        if args.keep:
            print(f"bench: scratch kept in {scratch}")
        else:
            remove_tree(scratch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(report, args.out)
    print(f"bench: wrote {args.out}", flush=True)
    if report.errors:
        print(markdown(report).split("## Errors", 1)[1], file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
