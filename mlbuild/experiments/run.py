"""`mlbuild exp run`: each variant of a sweep built in its own scratch workspace on the
project's cache, -j at a time, and saved as a DVC experiment of the current commit.

Each variant's build runs in a child process (the engine's build(), in-process there): a
failing or interrupted variant cannot take the others' state with it, Ctrl-C reaches every
build through the terminal's process group, and the parent removes the workspaces whatever
happened. Stages whose inputs are the same in several variants run once: the builds share the
run-cache and take a lock per run-cache key (see BuildOptions.shared_runs).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.config.compose import has_configs
from mlbuild.config.sweep import Sweep, parse
from mlbuild.dvcfmt.yamlio import load_yaml
from mlbuild.errors import ConfigError, MlbuildError
from mlbuild.events import FAILED, StageResult
from mlbuild.experiments import refs
from mlbuild.experiments.scratch import prepare_variant
from mlbuild.files.layout import ENV_FILE

if TYPE_CHECKING:
    from mlbuild.history.journal import Recorder

OK, FAILED_VARIANT, INTERRUPTED = "ok", "failed", "interrupted"


@dataclass
class Variant:
    """One point of the sweep and what became of it."""

    index: int
    overrides: list[str]  # everything passed to the build
    swept: list[str]  # the part that differs between variants (for display)
    name: str = ""
    status: str = "pending"
    error: str = ""
    seconds: float = 0.0
    commit: str = ""
    stages: list[StageResult] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The variant as `exp run --json` reports it."""
        return {"name": self.name, "overrides": self.overrides, "status": self.status,
                "error": self.error, "seconds": round(self.seconds, 3), "commit": self.commit,
                "metrics": self.metrics,
                "stages": [{"stage": s.stage, "outcome": s.outcome, "seconds": s.seconds}
                           for s in self.stages]}


OnVariant = Callable[[Variant], None]


@contextmanager
def sweep_record(root: Path, args: list[str], baseline: str) -> Iterator[Recorder]:
    """The whole sweep's history record; each variant's record names it as its parent."""
    from mlbuild.history.journal import recording

    with recording(root, "exp run", args) as recorder:
        recorder.record.detail = {"baseline": baseline}
        yield recorder


def close_sweep(recorder: Recorder, variants: list[Variant]) -> None:
    """Name the sweep's experiments in its record, and fail it when a variant failed."""
    recorder.record.detail["experiments"] = [v.name for v in variants if v.commit]
    if any(v.status != OK for v in variants):
        recorder.record.status = "failed"


def plan(root: Path, overrides: list[str], name: str | None) -> tuple[str, list[Variant]]:
    """The baseline commit and the variants, each checked by composing its params (a key no
    variant's config has is bad input before anything runs)."""
    head = refs.baseline(root)
    if not has_configs(root):
        if overrides:
            raise ConfigError("exp run: overrides need configs/config.yaml (Hydra configs)")
        return head, [Variant(0, [], [])]
    variants = _variants(root, parse(root, overrides))
    if name is not None:
        refs.check_name(root, name)
        for variant in variants:
            variant.name = name if len(variants) == 1 else f"{name}-{variant.index + 1}"
    return head, variants


def _variants(root: Path, sweep: Sweep) -> list[Variant]:
    """The grid's variants, each without the overrides its composition has no key for (see
    conditional.py); variants that then coincide are built once."""
    from mlbuild.experiments.conditional import fit_all

    grid = sweep.grid()
    fixed = len(sweep.fixed)
    variants: list[Variant] = []
    seen: set[tuple[str, ...]] = set()
    for overrides, found in zip(grid, fit_all(root, grid), strict=True):
        if tuple(found.kept) not in seen:
            seen.add(tuple(found.kept))
            swept = [o for o in overrides[fixed:] if o in found.kept]
            variants.append(Variant(len(variants), found.kept, swept))
    return variants


def run(root: Path, baseline: str, variants: list[Variant], jobs: int,
        on_variant: OnVariant, parent: str | None = None) -> list[Variant]:
    """Build every variant, *jobs* at a time; report each as it starts and ends."""
    from mlbuild.engine.warm import shared_pool

    with shared_pool():  # the variants' builds share warm interpreters
        return _run_all(root, baseline, variants, jobs, on_variant, parent)


def _run_all(root: Path, baseline: str, variants: list[Variant], jobs: int,
             on_variant: OnVariant, parent: str | None) -> list[Variant]:
    slots = threading.Semaphore(max(1, jobs))
    stop = threading.Event()
    ended: list[threading.Event] = []
    try:
        for variant in variants:
            while not slots.acquire(timeout=0.2):  # wait in slices: Ctrl-C lands here
                pass
            if stop.is_set():
                break
            ended.append(threading.Event())
            threading.Thread(target=_guarded, daemon=True, args=(
                root, baseline, variant, slots, stop, on_variant, ended[-1], parent)).start()
        for event in ended:
            while not event.wait(0.2):
                pass
    except BaseException:
        # Events, not Thread.join(): a join(timeout) that Ctrl-C interrupts can mark a live
        # thread as ended (CPython before 3.13), and its workspace would outlive us
        stop.set()
        for event in ended:  # each stops its build and removes its workspace
            event.wait()
        raise
    return variants


def _guarded(root: Path, baseline: str, variant: Variant, slots: threading.Semaphore,
             stop: threading.Event, on_variant: OnVariant, ended: threading.Event,
             parent: str | None) -> None:
    try:
        if stop.is_set():
            variant.status = INTERRUPTED
            return
        variant.status = "running"
        on_variant(variant)
        _one(root, baseline, variant, stop, parent)
    except MlbuildError as exc:
        variant.status, variant.error = FAILED_VARIANT, str(exc)
    finally:
        slots.release()
        try:
            on_variant(variant)
        finally:
            ended.set()


def _one(root: Path, baseline: str, variant: Variant, stop: threading.Event,
         parent: str | None) -> None:
    """Build one variant in a scratch workspace on the shared cache, save it, record it."""
    from mlbuild.engine.isolation import CacheMode, scratch_workspace
    from mlbuild.history.journal import Recorder

    started = time.monotonic()
    recorder = Recorder(root, "exp variant", variant.overrides)
    recorder.record.parent = parent
    with scratch_workspace(root, baseline, cache=CacheMode.SHARED,
                           prefix="mlbuild-exp-") as work:
        try:
            prepare_variant(root, work)
            outcome = _build_in_child(work, variant.overrides, stop)
            variant.seconds = time.monotonic() - started
            variant.stages = outcome.get("stages", [])
            variant.status = outcome["status"]
            variant.error = outcome.get("error", "")
            if variant.status == OK:
                from mlbuild.experiments.show import workspace_metrics

                variant.metrics = workspace_metrics(work)
                _save(root, baseline, work, variant)
        finally:
            _record(recorder, variant, work)


def _record(recorder: Recorder, variant: Variant, work: Path) -> None:
    """The variant's history record: overrides, full params, metrics, stages and outputs."""
    from mlbuild.dvcfmt.lockfile import LockFile
    from mlbuild.history.journal import StageRecord

    lock = LockFile(work) if (work / "dvc.lock").is_file() else None
    params = load_yaml(work / "params.yaml", "params.yaml") \
        if (work / "params.yaml").is_file() else {}
    recorder.record.detail = {"name": variant.name, "commit": variant.commit,
                              "params": params or {}, "metrics": variant.metrics,
                              "error": variant.error}
    for res in variant.stages:
        entry = lock.get(res.stage) if lock is not None else None
        outs = entry.out_md5s() if entry is not None else {}
        recorder.stage(StageRecord(res.stage, res.outcome, round(res.seconds, 3),
                                   list(res.reasons), res.message, outs))
    with suppress(OSError):  # a full disk must not turn a built variant into a failure
        recorder.finish(variant.status if variant.status != "running" else INTERRUPTED)


def _save(root: Path, baseline: str, work: Path, variant: Variant) -> None:
    lock = load_yaml(work / "dvc.lock", "dvc.lock") if (work / "dvc.lock").is_file() else {}
    digest = refs.exp_hash(dict((lock or {}).get("stages") or {}))
    if not variant.name:
        variant.name = f"exp-{digest[:5]}"
    exp = refs.save(root, baseline, work, variant.name, refs.message(digest, variant.overrides),
                    extra=["dvc.lock", "params.yaml", ENV_FILE, *_git_outputs(work)])
    variant.commit = exp.commit


def _git_outputs(work: Path) -> list[str]:
    """Outputs git keeps (cache: false: metrics, small plots): part of the experiment commit."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline

    return [o.path for s in load_pipeline(work).stages.values() for o in s.outs if not o.cache]


def _build_in_child(work: Path, overrides: list[str], stop: threading.Event
                    ) -> dict[str, Any]:
    """Run the engine's build of *work* in a child process and return its outcome."""
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(str(work), overrides, writer), daemon=True)
    child.start()
    writer.close()
    stopped = False
    while child.is_alive():
        child.join(0.2)
        if stop.is_set() and not stopped and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)  # Ctrl-C reached it too; SIGTERM may not have
            stopped = True
    try:
        outcome: dict[str, Any] = reader.recv() if reader.poll() else {}
    except (EOFError, OSError):
        outcome = {}
    if "status" not in outcome:
        outcome = {"status": INTERRUPTED if stop.is_set() else FAILED_VARIANT,
                   "error": f"the variant's build process died (exit code {child.exitcode})"}
    return outcome


def _child(work: str, overrides: list[str], out: Connection) -> None:
    """The variant's build, in its own process: its result goes back through *out*."""
    from mlbuild.engine.session import RunRequest, build

    def interrupted(_signum: int, _frame: object) -> None:
        # once: Ctrl-C reaches this process with the terminal's SIGINT and the parent's
        # SIGTERM; a second interrupt would cut short the build's own clean-up (its stages
        # stopped, their files removed) and leave the workspace half removable
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        result = build(Path(work), RunRequest(overrides=overrides, shared_runs=True),
                       record=False)
        failed = [s for s in result.stages.values() if s.outcome == FAILED]
        error = failed[0].message if failed else ""
        out.send({"status": FAILED_VARIANT if failed else OK, "error": error,
                  "stages": list(result.stages.values())})
    except KeyboardInterrupt:
        out.send({"status": INTERRUPTED, "error": "interrupted"})
    except MlbuildError as exc:
        out.send({"status": FAILED_VARIANT, "error": str(exc)})
