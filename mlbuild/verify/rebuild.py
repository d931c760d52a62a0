"""`mlbuild verify`: rebuild in an isolated scratch workspace and compare with dvc.lock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.lockfile import LockEntry, md5_of
from mlbuild.dvcfmt.yamlio import load_yaml
from mlbuild.engine import isolation as scratch
from mlbuild.errors import BadInputError, UsageError
from mlbuild.verify.hints import environment_diff, file_hints


class Status(StrEnum):
    """One stage's verification result (the values are what `verify --json` prints)."""

    IDENTICAL = "identical"
    DIFFERENT = "different"
    FAILED = "failed"
    NOT_RECORDED = "not-recorded"


IDENTICAL, DIFFERENT, FAILED, NOT_RECORDED = (Status.IDENTICAL, Status.DIFFERENT, Status.FAILED,
                                              Status.NOT_RECORDED)


@dataclass
class StageVerdict:
    """One stage's verification result."""

    stage: str
    status: str
    files: list[str] = field(default_factory=list)
    caused_by: str | None = None  # the upstream root cause a difference is attributed to
    hints: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The whole check."""

    revision: str
    dirty: bool
    mode: str  # "lock" or "twice"
    stages: list[StageVerdict]
    root_cause: str | None = None
    workspace: str | None = None  # the scratch directory, when kept (--keep)

    @property
    def ok(self) -> bool:
        """True when every stage reproduced."""
        return all(v.status in (IDENTICAL, NOT_RECORDED) for v in self.stages)

    def to_json(self) -> str:
        """Machine-readable report."""
        return json.dumps({
            "ok": self.ok, "revision": self.revision, "dirty": self.dirty, "mode": self.mode,
            "root_cause": self.root_cause, "workspace": self.workspace,
            "stages": [vars(v) for v in self.stages],
        }, indent=2)


def _lock_stages(path: Path) -> dict[str, LockEntry]:
    if not path.is_file():
        return {}
    data = load_yaml(path, "dvc.lock") or {}
    return {name: LockEntry.parse(entry) for name, entry in (data.get("stages") or {}).items()}


STOP_GRACE = 15.0  # seconds the scratch build gets to stop its stages (SIGTERM, then SIGKILL)


def _stop_with_parent() -> Callable[[], None] | None:
    """A preexec hook: the scratch build gets SIGTERM (and stops its stages as on Ctrl-C)
    when verify dies, even by kill -9 (Linux's parent-death signal)."""
    import ctypes
    import signal

    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # verify died before the hook ran
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _supervised(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, str]:
    """Run the scratch build; if verify itself is interrupted, stop the build and its stages
    (it handles SIGTERM like Ctrl-C) before the scratch workspace is removed."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_stop_with_parent())  # noqa: PLW1509 - no threads here
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    return stdout, stderr


def _build(workdir: Path, targets: list[str], jobs: int) -> tuple[list[str], dict[str, Any]]:
    """Run a forced build in *workdir*; return the topological order and the JSON report."""
    env = dict(os.environ)
    env.pop("DVC_ROOT", None)
    env.pop("DVC_STAGE", None)
    cmd = [sys.executable, "-m", "mlbuild"]
    stdout, stderr = _supervised([*cmd, "run", "--force", "--keep-going", "--json", "-j",
                                  str(jobs), *targets], workdir, env)
    try:
        report = json.loads(stdout)
    except ValueError as exc:
        line = (stderr.strip().splitlines() or ["no output"])[-1]
        line = line.removeprefix("mlbuild: error: ")
        raise BadInputError(f"verify: the scratch build could not start: {line}") from exc
    dag = subprocess.run([*cmd, "dag", "--json"], cwd=workdir, env=env, capture_output=True,
                         text=True, check=False)
    order = [s["stage"] for s in json.loads(dag.stdout)["stages"]] if dag.returncode == 0 else []
    return order, report


def _unfinished(report: dict[str, Any]) -> set[str]:
    """Stages the scratch build did not complete (failed, or skipped after a failure)."""
    return {s["stage"] for s in report.get("stages", []) if s["outcome"] in ("failed", "skipped")}


def _prepare(root: Path, dest: Path) -> None:
    from mlbuild.dvcfmt.repolock import repo_lock

    scratch.checkout(root, dest)
    with repo_lock(root, announce=False):  # no `dvc gc` or build changes the cache meanwhile
        pulls = scratch.seed_data(root, dest)
        scratch.seed_frozen(root, dest)
    if pulls:  # through the same verified fetch as `mlbuild pull`
        from mlbuild.store.cache import Cache
        from mlbuild.store.tracked import find_pointers, restore_missing
        from mlbuild.store.transfer import pull_tracked

        cache = Cache(dest)
        outs = [o for o in find_pointers(dest, [], everything=True) if o.dvcfile in pulls]
        pull_tracked(dest, cache, outs)
        restore_missing(dest, outs, cache)


def _producer(dep: str, produced: dict[str, str]) -> str | None:
    """The differing stage behind a dep: it output the dep, a directory holding it, or a file
    inside it (a stage may depend on one file of another's output directory)."""
    for out, stage in produced.items():
        if dep == out or dep.startswith(out.rstrip("/") + "/") or out.startswith(
                dep.rstrip("/") + "/"):
            return stage
    return None


def _compare(order: list[str], expected: dict[str, LockEntry],
             actual: dict[str, LockEntry], failed: set[str]) -> list[StageVerdict]:
    verdicts: dict[str, StageVerdict] = {}
    produced: dict[str, str] = {}  # output path -> stage whose difference it carries
    for name in order:
        exp, act = expected.get(name), actual.get(name)
        if name in failed or act is None:
            verdicts[name] = StageVerdict(name, FAILED if name in failed else NOT_RECORDED)
            continue
        if exp is None:
            verdicts[name] = StageVerdict(name, NOT_RECORDED)
            continue
        files = sorted(p for p, info in act.outs.items()
                       if md5_of(exp.outs.get(p)) != md5_of(info))
        verdict = StageVerdict(name, DIFFERENT if files else IDENTICAL, files)
        if files:
            dep_diff = [d for d, info in act.deps.items()
                        if md5_of(exp.deps.get(d)) != md5_of(info)]
            upstream = {s for d in dep_diff if (s := _producer(d, produced)) is not None}
            verdict.caused_by = min(upstream, key=order.index) if upstream else None
            for path in files:
                produced[path] = verdict.caused_by or name
        verdicts[name] = verdict
    return list(verdicts.values())


def verify(root: Path, targets: list[str], jobs: int, twice: bool = False,
           keep: bool = False) -> VerifyReport:
    """Rebuild from scratch in isolation and compare every output's hash."""
    sha, dirty = scratch.revision(root)
    first = scratch.make()
    dirs = [first]
    try:
        _prepare(root, first / "ws")
        expected = _lock_stages(first / "ws" / "dvc.lock")
        if not twice and not expected:
            raise UsageError(
                f"verify: revision {sha[:12]} has no committed dvc.lock to compare with; build "
                "with 'mlbuild run' and commit dvc.lock, or use 'mlbuild verify --twice'")
        failed: set[str] = set()
        if twice:
            second = scratch.make()
            dirs.append(second)
            _prepare(root, second / "ws")
            _, report = _build(second / "ws", targets, jobs)
            expected = _lock_stages(second / "ws" / "dvc.lock")
            failed = _unfinished(report)
        order, report = _build(first / "ws", targets, jobs)
        built = {s["stage"] for s in report.get("stages", [])}  # the targets and their upstream
        failed |= _unfinished(report)
        actual = _lock_stages(first / "ws" / "dvc.lock")
        verdicts = _compare([n for n in order if n in built], expected, actual, failed)
        for verdict in verdicts:
            if verdict.status == FAILED:
                msg = next((s["message"] for s in report["stages"] if s["stage"] == verdict.stage),
                           "")
                verdict.hints.append(msg.splitlines()[0] if msg else "the stage failed")
            elif verdict.status == DIFFERENT and verdict.caused_by is None:
                verdict.hints += environment_diff(expected[verdict.stage],
                                                  actual[verdict.stage])
                verdict.hints += file_hints(first / "ws", verdict.files, [root, first])
                if twice:
                    verdict.hints.append("nondeterministic: two builds of the same inputs differ")
        roots = [v.stage for v in verdicts if v.status == DIFFERENT and v.caused_by is None]
        return VerifyReport(sha, dirty, "twice" if twice else "lock", verdicts,
                            roots[0] if roots else None,
                            workspace=str(first / "ws") if keep else None)
    finally:
        if not keep:
            for path in dirs:
                shutil.rmtree(path, ignore_errors=True)
