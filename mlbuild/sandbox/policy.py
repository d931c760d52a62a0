"""Which stages run hermetic, with what settings, and what their findings mean."""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.config.settings import Hermetic, ProjectConfig
from mlbuild.errors import StageFailedError
from mlbuild.files.names import derived
from mlbuild.pipeline.model import Stage
from mlbuild.sandbox.environ import PINNED, THREAD_VARS, allowed_names, stage_environment
from mlbuild.sandbox.findings import Findings, Snapshot, analyse, snapshot
from mlbuild.sandbox.guard import (
    Protection,
    meta_changes,
    protect,
    put_back,
    targets,
    tidy,
    with_targets,
    write_policy,
)

MAX_LISTED = 5


@dataclass
class Box:
    """One stage run inside the sandbox: its environment, then its findings."""

    env: dict[str, str]
    findings: Findings = field(default_factory=Findings)


def _listed(paths: list[str]) -> str:
    shown = ", ".join(f"'{p}'" for p in paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")


def _lines_to_add(key: str, paths: list[str], stage: Stage, where: str) -> str:
    """"add '- a.csv' under stages.train.deps in dvc.yaml": the exact lines that fix it."""
    lines = ", ".join(f"'- {p}'" for p in paths[:MAX_LISTED])
    base = stage.name.split("@", 1)[0]
    if where != "dvc.yaml":
        section = key
    elif base == stage.name:
        section = f"stages.{base}.{key}"
    else:
        section = f"the {key} of stage '{base}'"
    return f"add {lines} under {section} in {where}"


def _settings_hint(stage: Stage, where: str, setting: str) -> str:
    """Where a hermetic setting goes: the declaration's block, or mlbuild.yaml's stages."""
    if where != "dvc.yaml":
        return f"'hermetic: {{{setting}}}' in {where}"
    return f"'stages: {{{stage.name.split('@', 1)[0]}: {{{setting}}}}}' in mlbuild.yaml"


@dataclass
class Sandbox:
    """Runs stages hermetically (declared stages, or all with strict) and judges findings."""

    root: Path
    scratch: Path
    environment: dict[str, Any]  # .mlbuild/environment.yaml
    project: ProjectConfig
    all_outs: list[str]
    strict: bool = False
    # the DVC cache object holding a project file's current content, if the stat cache knows
    in_cache: Callable[[str], Path | None] = field(default=lambda _rel: None)

    @functools.cached_property
    def landings(self) -> dict[str, str]:
        """Where symlinks inside the project land declared outputs: resolved once per build
        (resolving every output for each stage made a thousand-stage build quadratic)."""
        return targets(self.root, self.all_outs)

    def hermetic_for(self, stage: Stage) -> Hermetic | None:
        """The stage's settings, or None when it runs in adoption mode (as under DVC)."""
        doc = (self.environment.get("stages") or {}).get(stage.name)
        if isinstance(doc, dict) and isinstance(doc.get("hermetic"), dict):
            return Hermetic.from_doc(doc["hermetic"])
        if self.strict or self.project.strict:
            return self.project.stage_settings(stage.name)
        return None

    def env_ahead(self, stage: Stage) -> dict[str, str] | None:
        """The environment a hermetic stage's command gets, less its run's own files (None
        when it is not hermetic): what a warm interpreter is started with ahead of it."""
        hermetic = self.hermetic_for(stage)
        if hermetic is None:
            return None
        home = self.scratch / "home" / derived(stage.name.replace("/", "_"))
        return stage_environment(self.root, stage.name, hermetic, home, self.scratch / "trace",
                                 "", shim=self.scratch / "shim")

    def declaration(self, stage: Stage) -> str:
        """Where the user changes this stage's declaration."""
        if (self.root / "stages" / f"{stage.name}.yaml").is_file():
            return f"stages/{stage.name}.yaml"
        return "dvc.yaml"

    @contextmanager
    def session(self, stage: Stage) -> Iterator[Box]:
        """Prepare the environment, watch the workspace, then collect findings; in a hermetic
        stage, refuse undeclared writes up front and put back what changed anyway."""
        hermetic = self.hermetic_for(stage)
        safe = stage.name.replace("/", "_")
        run_id = derived(safe, suffix=f"-{uuid.uuid4().hex[:8]}")
        trace = self.scratch / "trace" / run_id
        trace.mkdir(parents=True)
        home = self.scratch / "home" / derived(safe)
        skip = with_targets(self.root, self.all_outs, self.landings)  # also where links land
        before = snapshot(self.root, skip, pycache=hermetic is not None)
        prot = None
        if hermetic is not None:
            tidy(self.scratch / "guard", run_id[:-9])  # last runs' leftovers
            prot = self._protect(stage, before, trace, home, run_id)
        allow = _settings_hint(stage, self.declaration(stage), "network: true")
        env = stage_environment(self.root, stage.name, hermetic, home, trace, allow,
                                guard=None if prot is None else trace / "policy",
                                shim=self.scratch / "shim")
        box = Box(env)
        try:
            yield box
        finally:
            after = snapshot(self.root, skip, pycache=hermetic is not None)
            allowed = None
            if hermetic is None:
                allowed = allowed_names(Hermetic()) | set(PINNED) | set(THREAD_VARS) | {
                    "HOME", "TMPDIR", "PYTHONPATH"}
            box.findings = analyse(self.root, stage, trace, before, after, allowed)
            shutil.rmtree(trace, ignore_errors=True)
            if prot is not None:
                self._put_back(prot, before, after, box.findings)

    def _protect(self, stage: Stage, before: Snapshot, trace: Path, home: Path,
                 run_id: str) -> Protection:
        """Write the hook's policy and take what is needed to put files back."""
        outs = [o.path for o in stage.outs]
        mine = set(outs)
        others = [o for o in self.all_outs if o not in mine]
        write_policy(trace / "policy", self.root, outs, before, others, [home, trace],
                     self.landings)
        return protect(self.root, self.scratch / "guard" / run_id, before, self.in_cache)

    def _put_back(self, prot: Protection, before: Snapshot, after: Snapshot,
                  findings: Findings) -> None:
        """Restore undeclared files the stage changed, and the tool metadata. When the trace
        saw every process, only what it wrote is the stage's doing (other changes are someone
        else's: a warning); otherwise every change is taken for the stage's."""
        changed = [p for p in before if before[p] != after.get(p)]
        changed += [p for p in after if p not in before and "__pycache__" in p.split("/")]
        if findings.traced:
            changed = [p for p in changed if p in set(findings.written)]
        changed += meta_changes(prot)
        result = put_back(prot, changed)
        findings.restored, findings.lost = result.restored, result.lost
        findings.changed = [p for p in findings.changed if p not in changed]
        if result.kept is not None:
            findings.kept = os.path.relpath(result.kept, self.root)
            shutil.rmtree(prot.area / "before", ignore_errors=True)
            tidy(prot.area.parent, prot.area.name[:-9], keep=prot.area)
        else:
            shutil.rmtree(prot.area, ignore_errors=True)

    def _guarded(self, stage: Stage, findings: Findings, where: str
                 ) -> list[tuple[bool, str]]:
        """What the write guard refused or put back (hermetic stages only; always fatal)."""
        found = []
        if findings.refused:
            found.append((True, f"was refused {len(findings.refused)} change(s) to files it "
                                f"does not declare, first: {findings.refused[0]}"))
        if findings.restored:
            kept = (f" (its version is kept in {findings.kept} until the stage next puts a "
                    "file back)") if findings.kept else ""
            found.append((True, f"changed undeclared file(s) {_listed(findings.restored)}; "
                                f"they were put back as they were before the run{kept}; if "
                                "the stage should write them, "
                                + _lines_to_add("outs", findings.restored, stage, where)))
        if findings.lost:
            found.append((True, f"changed undeclared file(s) {_listed(findings.lost)}, which "
                                "could not be put back (no copy was taken: larger than the "
                                "copy budget, or not a regular file)"))
        return found

    def judge(self, stage: Stage, findings: Findings) -> list[str]:
        """Warnings to show; raises StageFailedError when a hermetic stage broke its rules."""
        hermetic = self.hermetic_for(stage)
        where = self.declaration(stage)
        declared = dict(self.project.stages).get(stage.name.split("@", 1)[0])
        if hermetic is None and declared is not None:  # adoption mode, already answered
            findings.network = [] if declared.network else findings.network
            findings.env = [e for e in findings.env if e not in declared.env]
        problems: list[tuple[bool, str]] = []
        if findings.reads:
            fatal = hermetic is not None and hermetic.undeclared_reads == "fail"
            problems.append((fatal, f"read undeclared input(s) {_listed(findings.reads)}; "
                                    + _lines_to_add("deps", findings.reads, stage, where)))
        if findings.writes:
            problems.append((hermetic is not None,
                             f"wrote undeclared output(s) {_listed(findings.writes)}; "
                             + _lines_to_add("outs", findings.writes, stage, where)))
        problems += self._guarded(stage, findings, where)
        if findings.changed:
            problems.append((False, f"ran while undeclared file(s) {_listed(findings.changed)} "
                                    "changed; if the stage wrote them, "
                                    + _lines_to_add("outs", findings.changed, stage, where)))
        if findings.network and not (hermetic is not None and hermetic.network):
            allow = _settings_hint(stage, where, "network: true")
            problems.append((hermetic is not None,
                             f"used the network ({findings.network[0]}); hermetic stages may "
                             f"not: allow it with {allow}"))
        if findings.env:
            names = ", ".join(findings.env[:MAX_LISTED])
            problems.append((False, f"read environment variable(s) {_listed(findings.env)}, "
                                    "which hermetic mode scrubs; declare them with "
                                    + _settings_hint(stage, where, f"env: [{names}]")))
        errors = [msg for is_fatal, msg in problems if is_fatal]
        if errors:
            raise StageFailedError(f"stage '{stage.name}' is hermetic and " + "; ".join(errors))
        return [f"stage '{stage.name}' {msg}" for _, msg in problems]
