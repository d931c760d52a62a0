"""One continuous-training step: judge the triggers and, when one fired, build what changed,
commit the new dvc.lock, verify that commit in isolation, push its data and model, register a
new version and promote it through the stage's gate. A failed step stops the rest, so a model
that did not pass every check is never promoted, and the serving version stays. The decision,
every step and its time go into the run history (the time-to-respond KPI reads them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.ct import triggers
from mlbuild.ct.config import CtConfig
from mlbuild.ct.triggers import Baseline, Trigger
from mlbuild.errors import UsageError

Say = Callable[[str], None]
TRAILER = "Mlbuild-Triggers"  # the ct commit's trailer: why it retrained (lineage reads it)


@dataclass
class Step:
    """One action of the step, how it ended and how long it took."""

    name: str
    ok: bool
    detail: str
    seconds: float

    def to_doc(self) -> dict[str, Any]:
        """The JSON form."""
        return {"step": self.name, "ok": self.ok, "detail": self.detail,
                "seconds": round(self.seconds, 3)}


@dataclass
class Decision:
    """What the step decided and did."""

    model: str
    stage: str
    baseline: Baseline
    triggers: list[Trigger]
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    outcome: str = "nothing to do"
    new_version: str | None = None
    gate: dict[str, Any] | None = None

    @property
    def fired(self) -> list[str]:
        """The triggers that fired."""
        return [t.name for t in self.triggers if t.fired]

    @property
    def failed(self) -> bool:
        """A triggered build, check or gate failed (exit 1)."""
        return any(not s.ok for s in self.steps)

    def to_doc(self) -> dict[str, Any]:
        """The JSON form (kept in the run history as detail.ct)."""
        return {"model": self.model, "stage": self.stage, "serving": self.baseline.version,
                "baseline_commit": self.baseline.commit, "dry_run": self.dry_run,
                "triggers": [t.to_doc() for t in self.triggers], "fired": self.fired,
                "built": any(s.name == "build" and s.ok for s in self.steps),
                "steps": [s.to_doc() for s in self.steps], "outcome": self.outcome,
                "new_version": self.new_version, "gate": self.gate}


def judge(root: Path, base: Baseline, wanted: tuple[str, ...], settings: CtConfig
          ) -> list[Trigger]:
    """The requested triggers' verdicts."""
    found: list[Trigger] = []
    if "data" in wanted or "code" in wanted:
        found.extend(t for t in triggers.data_and_code(root, base) if t.name in wanted)
    if "schedule" in wanted:
        found.append(triggers.schedule(root, base, settings.schedule))
    if "drift" in wanted:
        found.append(triggers.drift(root, base, settings.drift_window, settings.labels))
    return found


class _Steps:
    """Runs the actions in order, timing each; the first failure ends the step."""

    def __init__(self, decision: Decision, say: Say) -> None:
        self.decision, self.say = decision, say

    def do(self, name: str, action: Callable[[], tuple[bool, str]]) -> bool:
        self.say(f"{name} ...")
        started = time.monotonic()
        ok, detail = action()
        self.decision.steps.append(Step(name, ok, detail, time.monotonic() - started))
        self.say(f"{name}: {'ok' if ok else 'FAILED'}: {detail}")
        return ok


def _build(root: Path) -> tuple[bool, str]:
    from mlbuild import api

    results = api.run(root, api.RunRequest())
    bad = api.failed(results)
    ran = [n for n, r in results.items() if str(r.outcome) in ("ran", "restored")]
    if bad:
        return False, f"stage {bad[0].stage} failed: {bad[0].message}"
    return True, f"ran {', '.join(ran) or 'nothing (all up to date)'}"


def _commit(root: Path, model: str, fired: list[str]) -> tuple[bool, str]:
    from mlbuild.gitrepo import git

    git(root, "add", "-u")
    new = git(root, "ls-files", "--others", "--exclude-standard", "-z").decode().split("\0")
    extra = [p for p in new if p.endswith((".gitignore", "dvc.lock"))]
    if extra:
        git(root, "add", "--", *extra)
    if not git(root, "diff", "--cached", "--name-only").strip():
        return True, "nothing to commit"
    who = [] if git_identity(root) else ["-c", "user.name=mlbuild ct",
                                         "-c", "user.email=mlbuild-ct@localhost"]
    git(root, *who, "commit", "-q", "-m", f"mlbuild ct: retrain {model} ({', '.join(fired)})",
        "-m", f"{TRAILER}: {', '.join(fired)}")
    return True, git(root, "rev-parse", "--short=10", "HEAD").decode().strip()


def git_identity(root: Path) -> bool:
    """git knows who commits (CI machines often do not)."""
    from mlbuild.gitrepo import GitError, git

    try:
        return bool(git(root, "config", "user.email").strip())
    except GitError:
        return False


def _verify(root: Path) -> tuple[bool, str]:
    from mlbuild import api
    from mlbuild.verify.rebuild import IDENTICAL, NOT_RECORDED

    report = api.verify(root, [], 1)
    differ = [s.stage for s in report.stages if s.status not in (IDENTICAL, NOT_RECORDED)]
    return report.ok, ("every stage identical" if report.ok
                       else f"differs: {', '.join(differ) or report.root_cause}")


def _artifact_md5(root: Path, model: str) -> str | None:
    from mlbuild.registry.evidence import artifact_path, lock_at

    path = artifact_path(root, model)
    for entry in lock_at(root, None).values():
        info = entry.outs.get(path)
        if info is not None:
            return info.md5
    return None


def _serving_md5(root: Path, decision: Decision) -> str | None:
    from mlbuild.registry.evidence import gather

    base = decision.baseline
    return gather(root, base.model, base.commit).info.md5 if base.commit else None


def act(root: Path, decision: Decision, say: Say) -> None:
    """Build, commit, verify, push, register, promote: stop at the first failure."""
    from mlbuild import api
    from mlbuild.registry import ops

    steps = _Steps(decision, say)
    if not steps.do("build", lambda: _build(root)):
        decision.outcome = "build failed: the serving version stays"
        return
    if _artifact_md5(root, decision.model) == _serving_md5(root, decision):
        decision.outcome = (f"rebuilt: the model is unchanged (same hash as "
                            f"{decision.baseline.version}); nothing to register")
        return
    if not (steps.do("commit", lambda: _commit(root, decision.model, decision.fired))
            and steps.do("verify", lambda: _verify(root))):
        decision.outcome = "verify failed: the serving version stays"
        return
    steps.do("push", lambda: (True, f"{api.push(root, [], None)} object(s) sent"))
    registered = ops.register(root, decision.model, None, None)
    decision.new_version = registered.version
    decision.steps.append(Step("register", True, registered.tag or "", 0.0))
    promoted = ops.promote(root, decision.model, registered.version, decision.stage)
    report = promoted.report
    decision.gate = report.to_doc() if report else None
    passed = bool(report and report.passed)
    failed = next((c for c in report.checks if not c.passed), None) if report else None
    decision.steps.append(Step("promote", passed, (
        f"{registered.version} -> {decision.stage}" if passed
        else f"gate refused {registered.version}: {failed.detail if failed else '?'}"), 0.0))
    decision.outcome = (f"promoted {registered.version} to {decision.stage}" if passed else
                        f"gate refused {registered.version}: "
                        f"{decision.baseline.version or 'no version'} keeps serving")


def step(root: Path, model: str, stage: str, wanted: tuple[str, ...], settings: CtConfig,
         dry_run: bool, say: Say) -> Decision:
    """One continuous-training step (see the module docstring)."""
    from mlbuild.registry import config as registry_config
    from mlbuild.registry.checks import require_clean
    from mlbuild.registry.evidence import artifact_path
    from mlbuild.registry.ops import check_stage

    artifact_path(root, model)  # an unknown model: its did-you-mean
    check_stage(registry_config.load(root), stage)
    base = triggers.baseline(root, model, stage)
    decision = Decision(model, stage, base, judge(root, base, wanted, settings), dry_run)
    if not decision.fired:
        decision.outcome = "nothing to do: no trigger fired"
    elif dry_run:
        decision.outcome = f"would retrain ({', '.join(decision.fired)}); dry run"
    else:
        try:
            require_clean(root)
        except UsageError as exc:
            raise UsageError(f"ct commits what it builds: {exc}") from exc
        act(root, decision, say)
    if decision.fired:
        _share(root, decision)
    return decision


def _share(root: Path, decision: Decision) -> None:
    """A fired trigger is a finding the team shares (a git note on the commit it judged or
    built): drift detected, a retrain that failed, a version promoted."""
    from mlbuild.gitrepo import head_revision
    from mlbuild.history import notes

    head = head_revision(root)
    if head is not None:
        notes.add(root, head, "ct", {
            "model": decision.model, "stage": decision.stage, "fired": decision.fired,
            "serving": decision.baseline.version, "dry_run": decision.dry_run,
            "failed": decision.failed, "outcome": decision.outcome,
            "new_version": decision.new_version})
