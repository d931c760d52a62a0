"""`mlbuild verify`: rebuild in an isolated scratch workspace and compare with dvc.lock."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.dvcfmt.lockfile import recorded
from mlbuild.dvcfmt.yamlio import load_yaml
from mlbuild.engine import isolation as scratch
from mlbuild.errors import BadInputError, MlbuildError, UsageError
from mlbuild.events import Outcome, StageResult
from mlbuild.verify.hints import environment_diff, file_hints

if TYPE_CHECKING:
    from mlbuild.engine.session import BuildResult

IDENTICAL, DIFFERENT, FAILED, NOT_RECORDED = "identical", "different", "failed", "not-recorded"


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
    # the compared scratch build's own results, and the output hashes it recorded, per stage
    build: dict[str, StageResult] = field(default_factory=dict, repr=False)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

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


def _lock_stages(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = load_yaml(path, "dvc.lock") or {}
    return dict(data.get("stages") or {})


def _build(workdir: Path, targets: list[str], jobs: int) -> BuildResult:
    """A forced build of *workdir*, in this process and recorded in no history (verify records
    itself). Its stage processes die with verify, even on kill -9 (see engine.procgroup)."""
    from mlbuild.engine.session import RunRequest, build

    request = RunRequest(targets=list(targets), jobs=jobs, force=True, keep_going=True)
    try:
        return build(workdir, request, record=False)
    except MlbuildError as exc:
        line = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        raise BadInputError(f"verify: the scratch build could not start: {line}") from exc


def _unfinished(build: BuildResult) -> set[str]:
    """Stages the scratch build did not complete (failed, or skipped after a failure)."""
    return {s.stage for s in build.stages.values() if s.outcome in (Outcome.FAILED,
                                                                      Outcome.SKIPPED)}


def _producer(dep: str, produced: dict[str, str]) -> str | None:
    """The differing stage behind a dep: it output the dep, a directory holding it, or a file
    inside it (a stage may depend on one file of another's output directory)."""
    for out, stage in produced.items():
        if dep == out or dep.startswith(out.rstrip("/") + "/") or out.startswith(
                dep.rstrip("/") + "/"):
            return stage
    return None


def _compare(order: list[str], expected: dict[str, dict[str, Any]],
             actual: dict[str, dict[str, Any]], failed: set[str]) -> list[StageVerdict]:
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
        exp_outs, act_outs = recorded(exp.get("outs")), recorded(act.get("outs"))
        files = sorted(p for p, item in act_outs.items()
                       if exp_outs.get(p, {}).get("md5") != item.get("md5"))
        verdict = StageVerdict(name, DIFFERENT if files else IDENTICAL, files)
        if files:
            dep_diff = [d for d, item in recorded(act.get("deps")).items()
                        if recorded(exp.get("deps")).get(d, {}).get("md5") != item.get("md5")]
            upstream = {s for d in dep_diff if (s := _producer(d, produced)) is not None}
            verdict.caused_by = min(upstream, key=order.index) if upstream else None
            for path in files:
                produced[path] = verdict.caused_by or name
        verdicts[name] = verdict
    return list(verdicts.values())


def _explain(verdicts: list[StageVerdict], build: BuildResult, expected: dict[str, Any],
             actual: dict[str, Any], places: tuple[Path, list[Path]], twice: bool) -> None:
    """Add hints: a failed stage's message, or the likely cause of a root difference."""
    for verdict in verdicts:
        if verdict.status == FAILED:
            result = build.stages.get(verdict.stage)
            msg = result.message if result is not None else ""
            verdict.hints.append(msg.splitlines()[0] if msg else "the stage failed")
        elif verdict.status == DIFFERENT and verdict.caused_by is None:
            verdict.hints += environment_diff(expected.get(verdict.stage, {}),
                                              actual.get(verdict.stage, {}))
            verdict.hints += file_hints(places[0], verdict.files, places[1])
            if twice:
                verdict.hints.append("nondeterministic: two builds of the same inputs differ")


def verify(root: Path, targets: list[str], jobs: int, twice: bool = False,
           keep: bool = False) -> VerifyReport:
    """Rebuild from scratch in isolation and compare every output's hash."""
    sha, dirty = scratch.revision(root)
    stack = ExitStack()  # the scratch workspaces, removed however this ends
    try:
        first = stack.enter_context(scratch.scratch_workspace(root, sha, keep=keep))
        expected = _lock_stages(first / "dvc.lock")
        if not twice and not expected:
            raise UsageError(
                f"verify: revision {sha[:12]} has no committed dvc.lock to compare with; build "
                "with 'mlbuild run' and commit dvc.lock, or use 'mlbuild verify --twice'")
        failed: set[str] = set()
        if twice:
            second = stack.enter_context(scratch.scratch_workspace(root, sha, keep=keep))
            failed = _unfinished(_build(second, targets, jobs))
            expected = _lock_stages(second / "dvc.lock")
        built = _build(first, targets, jobs)
        failed |= _unfinished(built)
        actual = _lock_stages(first / "dvc.lock")
        verdicts = _compare(built.order, expected, actual, failed)
        _explain(verdicts, built, expected, actual, (first, [root, first.parent]), twice)
        roots = [v.stage for v in verdicts if v.status == DIFFERENT and v.caused_by is None]
        return VerifyReport(sha, dirty, "twice" if twice else "lock", verdicts,
                            roots[0] if roots else None,
                            workspace=str(first) if keep else None, build=built.stages,
                            outputs={name: {p: str(item.get("md5")) for p, item in
                                            recorded(entry.get("outs")).items()}
                                     for name, entry in actual.items()})
    finally:
        stack.close()
