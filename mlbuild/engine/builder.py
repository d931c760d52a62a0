"""Bringing one stage up to date: check, restore from the run-cache, or run and commit."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.contracts import Side
from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.lockfile import LockEntry, LockFile, stage_entry
from mlbuild.engine.procgroup import ProcessTable
from mlbuild.engine.runner import backed_up_outputs, log_name, run_command
from mlbuild.engine.stagechecks import check_contracts, inputs_unchanged, outputs_inside
from mlbuild.engine.staleness import Reason, Snapshot, StatusChecker, Why
from mlbuild.engine.warm import WarmPool
from mlbuild.errors import MlbuildError, StageFailedError
from mlbuild.events import (
    FAILED,
    FROZEN,
    RAN,
    RESTORED,
    UP_TO_DATE,
    WOULD_RUN,
    Emit,
    Event,
    Kind,
    StageResult,
)
from mlbuild.files.layout import state_dir
from mlbuild.pipeline.graph import Graph
from mlbuild.pipeline.plan import Plan
from mlbuild.sandbox.policy import Sandbox
from mlbuild.store import gitignore
from mlbuild.store.boundary import BoundaryError, check_paths, stage_paths
from mlbuild.store.cache import Cache, unprotect
from mlbuild.store.hashing import Hasher
from mlbuild.store.runcache import RunCache, can_cache, run_key, saves_run_cache


@dataclass
class BuildOptions:
    """What the user asked of this build."""

    force: bool = False
    dry_run: bool = False
    use_run_cache: bool = True
    pull: bool = False  # fetch what the plan needs from the DVC remote
    shared_runs: bool = False  # other builds share this cache: run equal inputs only once
    only: frozenset[str] | None = None  # stages allowed to run (a KFP task: its own stage)


@dataclass
class Builder:
    """Holds the build's shared state; build_stage is the executor's per-stage function."""

    root: Path
    graph: Graph
    lock: LockFile
    hasher: Hasher
    checker: StatusChecker
    cache: Cache
    runcache: RunCache
    emit: Emit
    sandbox: Sandbox
    options: BuildOptions = field(default_factory=BuildOptions)
    procs: ProcessTable = field(default_factory=ProcessTable)
    warm: WarmPool | None = None  # forks plain Python commands from warm interpreters
    plan: Plan | None = None  # a dry run's verdicts come from it
    warnings: dict[str, list[str]] = field(default_factory=dict)
    restored: dict[str, str] = field(default_factory=dict)  # stage -> how it was restored
    _contracts_lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: dict[str, str] = field(default_factory=dict)
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    @property
    def scratch(self) -> Path:
        """mlbuild's temporary area inside .dvc/tmp."""
        return state_dir(self.root)

    def build_stage(self, name: str) -> StageResult:
        """Bring one stage up to date and report how."""
        start = time.monotonic()
        try:
            outcome, reasons = self._build(name)
            result = StageResult(name, outcome, reasons=[str(r) for r in reasons],
                                 message=self.restored.get(name, ""))
        except BoundaryError:
            raise  # bad input (exit 2), as when found before the build: stops the build
        except MlbuildError as exc:
            log = str(self.scratch / "logs" / log_name(name, ".err"))
            result = StageResult(name, FAILED, message=str(exc), log=log)
        except (OSError, ValueError, RuntimeError) as exc:
            # one stage's unexpected problem (unreadable data, a vanished directory) fails
            # that stage alone; the build and the stages running beside it carry on
            result = StageResult(name, FAILED, message=f"stage '{name}' failed: "
                                 f"{self._describe(exc)}")
        result.seconds = time.monotonic() - start
        with self._mutex:
            self.outcomes[name] = result.outcome
            result.warnings = self.warnings.get(name, [])
            if result.outcome == RAN:  # about the command's interpolated values
                result.warnings = [*self.graph.stages[name].warnings, *result.warnings]
        self.emit(Event(Kind.DONE, name, result.outcome, result.seconds, tuple(result.reasons),
                        result.message, result.log, tuple(result.warnings)))
        return result

    def _describe(self, exc: BaseException) -> str:
        """An unexpected error in one line; a full disk says which filesystem."""
        from mlbuild.files.diskspace import describe, is_full

        if is_full(exc):
            where = Path(getattr(exc, "filename", None) or self.cache.dir)
            return (f"no space left on device while writing {where}; {describe(where)}; free "
                    "some space and run again (its previous outputs were put back)")
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return f"{type(exc).__name__}: {detail}"

    def _build(self, name: str) -> tuple[str, list[Reason]]:
        stage = self.graph.stages[name]
        # again now: an upstream stage may have made a symlink or a FIFO since loading
        check_paths(self.root, stage_paths(stage), self.cache.dir)
        if self.options.dry_run:
            return self._would_run(name)
        reasons, snap = self.checker.check(stage, self.lock.get(name))
        if stage.frozen:
            return self._frozen(stage, reasons, snap), reasons
        if self.options.force:
            reasons = [Reason(Why.FORCE, "forced"), *reasons]
        if not reasons:
            return UP_TO_DATE, []
        missing = [d.path for d in stage.deps if d.def_path not in snap.deps]
        if missing:  # e.g. a misspelt file inside another stage's output directory
            producers = ", ".join(f"'{u}'" for u in self.graph.upstream[name]) or "no stage"
            raise StageFailedError(
                f"stage '{name}': dependency '{missing[0]}' does not exist (its upstream "
                f"{producers} did not produce it); fix the path in its deps"
            )
        shared = self.options.shared_runs and can_cache(stage)  # other builds on this cache
        with (self.runcache.exclusive(run_key(self._partial_entry(stage, snap))) if shared
              else nullcontext()):
            if not self.options.force and (how := self._restore(stage, snap, reasons)):
                self.restored[name] = how
                return RESTORED, reasons
            self._may_run(name)
            self._run(stage, snap)
        return RAN, reasons

    def _may_run(self, name: str) -> None:
        """Refuse to run a stage outside `only`: in a KFP task, upstream stages come from
        the remote, where their own tasks put them."""
        if self.options.only is not None and name not in self.options.only:
            raise StageFailedError(
                f"stage '{name}' would have to run, but this build may only run "
                f"{', '.join(sorted(self.options.only))}: the remote has no outputs for its "
                "inputs; run its own task first (or 'mlbuild push' them)")

    def _would_run(self, name: str) -> tuple[str, list[Reason]]:
        """A dry run's verdict: the plan's reasons, and the upstream stages that would run."""
        stage = self.graph.stages[name]
        step = self.plan.step(name) if self.plan is not None else None
        reasons = [r for r in step.reasons if isinstance(r, Reason)] if step is not None \
            else self.checker.check(stage, self.lock.get(name))[0]
        if stage.frozen:
            return FROZEN, reasons
        if self.options.force:
            reasons = [Reason(Why.FORCE, "forced"), *reasons]
        ups = [u for u in self.graph.upstream[name] if self.outcomes.get(u) == WOULD_RUN]
        reasons += [Reason(Why.UPSTREAM, f"upstream stage '{u}' will run") for u in ups]
        return (WOULD_RUN if reasons else UP_TO_DATE), reasons

    def _partial_entry(self, stage: Any, snap: Snapshot) -> LockEntry:
        return stage_entry(stage, snap.deps, snap.params, {o.def_path: None for o in stage.outs})

    def _frozen(self, stage: Any, reasons: list[Reason], snap: Snapshot) -> str:
        """DVC never runs a frozen stage: it verifies its outputs exist and re-records them."""
        if not reasons:
            return FROZEN
        for out in stage.outs:
            if not (self.root / out.path).exists():
                raise StageFailedError(
                    f"stage '{stage.name}' is frozen and its output '{out.path}' is missing; "
                    "restore it with 'dvc checkout', or unfreeze the stage"
                )
        entry = stage_entry(stage, snap.deps, snap.params, self._commit_outputs(stage))
        self.lock.update(stage.name, entry)
        if saves_run_cache(stage):
            self.runcache.save(entry)
        return FROZEN

    def _recorded_build(self, stage: Any, snap: Snapshot, reasons: list[Reason]
                        ) -> LockEntry | None:
        """The lock entry (when only outputs changed) or run-cache entry for these inputs."""
        if not can_cache(stage) or len(snap.deps) != len(stage.deps):
            return None
        lock = self.lock.get(stage.name)
        if lock and all(r.kind == Why.OUTS for r in reasons):
            return lock
        if self.options.use_run_cache:
            return self.runcache.lookup(run_key(self._partial_entry(stage, snap)))
        return None

    def _restore(self, stage: Any, snap: Snapshot, reasons: list[Reason]) -> str:
        """Check outputs out of the cache instead of running, as DVC's run-cache does, and
        say how ("" when it could not): from the run-cache, from dvc.lock, or only re-stored.

        When only outputs changed, dvc.lock itself is the record (DVC does the same).
        """
        cached = self._recorded_build(stage, snap, reasons)
        if cached is None:
            return ""
        infos = {path: info for path, info in cached.outs.items() if info is not None}
        if set(infos) != {o.def_path for o in stage.outs} or len(infos) != len(cached.outs):
            return ""
        todo = [o for o in stage.outs  # outputs already in place need nothing from the cache
                if (cur := self.hasher.path(o.path)) is None or cur.md5 != infos[o.def_path].md5]
        missing = [(o.path, infos[o.def_path].md5) for o in todo
                   if not self.cache.complete(infos[o.def_path])]
        if missing and self.options.pull:
            self._fetch(stage.name, missing)
        if any(not self.cache.complete(infos[o.def_path]) for o in todo):
            return ""
        for out in stage.outs:
            if out in todo:
                self.cache.checkout(infos[out.def_path], self.root / out.path,
                                    private=not out.cache)
            elif out.cache and not self.cache.complete(infos[out.def_path]):
                self.cache.store(self.root / out.path, self.hasher)  # in place, cache lost it
            if out.cache:
                gitignore.ignore(self.root, out.path, durable=False)  # dvc.lock syncs it
        self.lock.update(stage.name, stage_entry(stage, snap.deps, snap.params, infos))
        if not todo:
            return "outputs re-stored in the cache"
        from_lock = all(r.kind == Why.OUTS for r in reasons)  # as _recorded_build decided
        return "checked out from the cache" if from_lock else "restored from run-cache"

    def _fetch(self, stage: str, outs: list[tuple[str, str]]) -> None:
        """Fetch outputs (path, md5) from the remote, each checked against its hash first."""
        from mlbuild.store import remotes as remote
        from mlbuild.store.transfer import corrupt_message, expand, fetch_verified

        def fetch() -> int:
            remote.fetch_objects(self.root, [md5 for _, md5 in outs], None)
            return len(outs)

        result = fetch_verified(self.root, self.cache, fetch, lambda: expand(self.cache, outs),
                                None)
        if result.corrupt:
            raise StageFailedError(f"stage '{stage}': "
                                   + corrupt_message(result.corrupt, expand(self.cache, outs)))

    def _run(self, stage: Any, snap: Snapshot) -> None:
        self._warm_up(stage)
        self._check_contracts(stage, Side.INPUT)
        for out in stage.outs:
            if out.persist:  # a persistent output is changed in place: never into the cache
                unprotect(self.root / out.path)
        recorded = self.lock.get(stage.name)
        before = recorded.out_md5s() if recorded is not None else {}
        with backed_up_outputs(self.root, stage, self.scratch / "backup", before):
            self._sandboxed(stage)
            inputs_unchanged(self.root, stage, snap, self.hasher)
            self._check_contracts(stage, Side.OUTPUT)
            outputs_inside(self.root, stage, self.cache.dir)
            outs = self._commit_outputs(stage)
        entry = stage_entry(stage, snap.deps, snap.params, outs)
        self.lock.update(stage.name, entry)
        if saves_run_cache(stage):
            self.runcache.save(entry)

    def _warm_up(self, stage: Any) -> None:
        """Start the warm interpreter a Python stage about to run needs, so that it imports
        while the stage's inputs are checked (and for the stages after it)."""
        from mlbuild.engine.warm import program

        if self.warm is not None and any(program(cmd) for cmd in stage.cmd):
            env = self.sandbox.env_ahead(stage)
            if env is not None:
                self.warm.prestart(env)

    def _check_contracts(self, stage: Any, side: Side) -> None:
        with self._contracts_lock:  # schema modules are imported into this process
            check_contracts(self.root, stage, side)

    def _sandboxed(self, stage: Any) -> None:
        """Run the command in the sandbox; hermetic violations fail the stage."""
        failure: StageFailedError | None = None
        with self.sandbox.session(stage) as box:
            try:
                run_command(self.root, stage, self.scratch / "logs", self.procs, env=box.env,
                            warm=self.warm)
            except StageFailedError as exc:
                failure = exc
        if failure is not None and not box.findings.network:
            raise failure
        warnings = self.sandbox.judge(stage, box.findings)
        if failure is not None:
            raise failure
        with self._mutex:
            self.warnings[stage.name] = warnings

    def _commit_outputs(self, stage: Any) -> dict[str, HashInfo]:
        outs: dict[str, HashInfo] = {}
        runcached = saves_run_cache(stage)
        missing = [o.path for o in stage.outs if not (self.root / o.path).exists()]
        if missing:  # checked before committing anything: a failed stage adds nothing to the cache
            raise StageFailedError(
                f"stage '{stage.name}' did not create its declared output(s) "
                + ", ".join(f"'{m}'" for m in missing)
            )
        for out in stage.outs:
            path = self.root / out.path
            if out.cache or runcached:
                info = self.cache.store(path, self.hasher)
            elif path.is_dir():
                info = self.hasher.directory(path)[0]
            else:
                info = self.hasher.file(path)
            if out.cache:
                gitignore.ignore(self.root, out.path, durable=False)  # dvc.lock syncs it
            outs[out.def_path] = info
        return outs
