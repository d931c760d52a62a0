"""Bringing one stage up to date: check, restore from the run-cache, or run and commit."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.dvcfmt.lockfile import LockFile, recorded, stage_entry
from mlbuild.engine.procgroup import ProcessTable
from mlbuild.engine.runner import backed_up_outputs, log_name, run_command
from mlbuild.engine.staleness import Reason, Snapshot, StatusChecker, Why
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
from mlbuild.pipeline.graph import Graph
from mlbuild.sandbox.policy import Sandbox
from mlbuild.store import gitignore
from mlbuild.store.boundary import BoundaryError, check_outputs, check_paths, stage_paths
from mlbuild.store.cache import Cache, unprotect
from mlbuild.store.hashing import Hasher
from mlbuild.store.runcache import RunCache, can_cache, run_key, saves_run_cache


def _md5(info: HashInfo | None) -> str | None:
    return info.md5 if info is not None else None


@dataclass
class BuildOptions:
    """What the user asked of this build."""

    force: bool = False
    dry_run: bool = False
    use_run_cache: bool = True
    pull: bool = False  # fetch what the plan needs from the DVC remote


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
    warnings: dict[str, list[str]] = field(default_factory=dict)
    restored: dict[str, str] = field(default_factory=dict)  # stage -> how it was restored
    _contracts_lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: dict[str, str] = field(default_factory=dict)
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    @property
    def scratch(self) -> Path:
        """mlbuild's temporary area inside .dvc/tmp."""
        return self.root / ".dvc" / "tmp" / "mlbuild"

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
        reasons, snap = self.checker.check(stage, self.lock.get(name))
        if stage.frozen:
            return self._frozen(stage, reasons, snap), reasons
        if self.options.force:
            reasons = [Reason(Why.FORCE, "forced"), *reasons]
        if self.options.dry_run:
            ups = [u for u in self.graph.upstream[name] if self.outcomes.get(u) == WOULD_RUN]
            reasons += [Reason(Why.UPSTREAM, f"upstream stage '{u}' will run") for u in ups]
            return (WOULD_RUN if reasons else UP_TO_DATE), reasons
        if not reasons:
            return UP_TO_DATE, []
        missing = [d.path for d in stage.deps if d.def_path not in snap.deps]
        if missing:  # e.g. a misspelt file inside another stage's output directory
            producers = ", ".join(f"'{u}'" for u in self.graph.upstream[name]) or "no stage"
            raise StageFailedError(
                f"stage '{name}': dependency '{missing[0]}' does not exist (its upstream "
                f"{producers} did not produce it); fix the path in its deps"
            )
        if not self.options.force and (how := self._restore(stage, snap, reasons)):
            self.restored[name] = how
            return RESTORED, reasons
        self._run(stage, snap)
        return RAN, reasons

    def _partial_entry(self, stage: Any, snap: Snapshot) -> dict[str, Any]:
        entry = stage_entry(stage, snap.deps, snap.params, {})
        entry["outs"] = [{"path": o.def_path} for o in sorted(stage.outs, key=lambda o: o.def_path)]
        return entry

    def _frozen(self, stage: Any, reasons: list[Reason], snap: Snapshot) -> str:
        """DVC never runs a frozen stage: it verifies its outputs exist and re-records them."""
        if not reasons or self.options.dry_run:
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
                        ) -> dict[str, Any] | None:
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
        infos = {}
        for item in cached.get("outs") or []:
            infos[str(item["path"])] = HashInfo.from_entry(item)
        if set(infos) != {o.def_path for o in stage.outs}:
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
        self._check_contracts(stage, "input")
        for out in stage.outs:
            if out.persist:  # a persistent output is changed in place: never into the cache
                unprotect(self.root / out.path)
        before = {path: str(item.get("md5")) for path, item in recorded(
            (self.lock.get(stage.name) or {}).get("outs")).items()}
        with backed_up_outputs(self.root, stage, self.scratch / "backup", before):
            self._sandboxed(stage)
            self._check_inputs_unchanged(stage, snap)
            self._check_contracts(stage, "output")
            self._check_outputs_inside(stage)
            outs = self._commit_outputs(stage)
        entry = stage_entry(stage, snap.deps, snap.params, outs)
        self.lock.update(stage.name, entry)
        if saves_run_cache(stage):
            self.runcache.save(entry)

    def _check_inputs_unchanged(self, stage: Any, snap: Snapshot) -> None:
        """Fail the stage when a dependency or param changed while it ran: what it read is not
        what the lock would record. Cheap: an unchanged file answers from the stat cache."""
        changed = [d.path for d in stage.deps
                   if _md5(self.hasher.path(d.path)) != _md5(snap.deps.get(d.def_path))]
        if stage.params and not changed:
            from mlbuild.dvcfmt.params import ParamsReader

            fresh = ParamsReader(self.root)
            changed = [p.path for p in stage.params
                       if fresh.values(p, stage.name) != snap.params.get(p.def_path)]
        if changed:
            raise StageFailedError(
                f"stage '{stage.name}': dependency '{changed[0]}' changed while the stage ran, "
                "so its outputs may come from either version; nothing was recorded and its "
                "previous outputs were put back: run it again once the input is settled"
            )

    def _check_outputs_inside(self, stage: Any) -> None:
        """The command may have made an output (or a file in an output directory) a link out
        of the project: fail the stage before anything of it is committed, so the caller puts
        its previous outputs back (the check before it ran could not see this)."""
        try:
            check_outputs(self.root, stage, self.cache.dir)
        except BoundaryError as exc:
            raise StageFailedError(f"{exc}; the stage's command made it so, nothing was "
                                   "recorded and its previous outputs were put back") from exc

    def _check_contracts(self, stage: Any, side: str) -> None:
        """Validate the stage's inputs (before it runs) or outputs (before any commit)."""
        if not stage.contracts:
            return
        from mlbuild.contracts import load_schema, validate

        todo = [c for c in stage.contracts if c.side == side]

        with self._contracts_lock:  # schema modules are imported into this process
            if side == "input":  # every schema loads before the command runs, not after
                for contract in stage.contracts:
                    load_schema(self.root, contract.schema)
            for contract in todo:
                validate(self.root, contract, stage.name)

    def _sandboxed(self, stage: Any) -> None:
        """Run the command in the sandbox; hermetic violations fail the stage."""
        failure: StageFailedError | None = None
        with self.sandbox.session(stage) as box:
            try:
                run_command(self.root, stage, self.scratch / "logs", self.procs, env=box.env)
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
