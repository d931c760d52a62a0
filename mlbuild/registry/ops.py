"""The registry's verbs that write tags: register, promote (through its gate) and rollback.
Each runs under the registry lock and re-reads the tags inside it, so two promotions at once
cannot both win, and each leaves a record in the run history."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import CheckFailedError, UsageError, did_you_mean
from mlbuild.files.layout import state_dir
from mlbuild.history import notes
from mlbuild.history.journal import recording
from mlbuild.registry import checks, config, gate, tags
from mlbuild.registry.evidence import Evidence, artifact_path, declared, gather
from mlbuild.registry.state import Registry

BUMPS = ("major", "minor", "patch")


@dataclass(frozen=True)
class Outcome:
    """What a registry command did: the tag written (None: refused) and the gate's report."""

    model: str
    version: str
    tag: str | None
    stage: str | None = None
    report: gate.GateReport | None = None
    replaced: str | None = None  # the version that held the stage before
    forced: bool = False


@contextmanager
def registry_lock(root: Path) -> Iterator[None]:
    """Serialise the registry's writers in this clone (git refuses a second tag of one name
    across clones: pushing it fails)."""
    folder = state_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "registry.lock", "w") as fobj:
        fcntl.flock(fobj, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fobj, fcntl.LOCK_UN)


def normalise(version: str) -> str:
    """'1.2.0' or 'v1.2.0' -> 'v1.2.0'; anything else is refused."""
    value = version if version.startswith("v") else f"v{version}"
    if tags.parse_version(value) is None:
        raise UsageError(f"invalid version '{version}': expected vMAJOR.MINOR.PATCH, such as "
                         "v1.2.0")
    return value


def _next_version(registry: Registry, name: str, version: str | None, bump: str | None) -> str:
    if version is not None and bump is not None:
        raise UsageError("give --version or --bump, not both")
    if version is not None:
        return normalise(version)
    latest = registry.latest(name)
    major, minor, patch = tags.parse_version(latest) if latest else (0, 0, 0)  # type: ignore[misc]
    kind = bump or "patch"
    if kind == "major":
        return f"v{major + 1}.0.0"
    if kind == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


def _message(title: str, payload: dict[str, Any]) -> str:
    return f"{title}\n\n{tags.PAYLOAD}{json.dumps(payload, sort_keys=True)}\n"


def _built_by(root: Path, md5: str) -> str | None:
    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(root)
    try:
        return index.built_by(md5)
    finally:
        index.close()


def register(root: Path, name: str, version: str | None, bump: str | None) -> Outcome:
    """Tag HEAD as a new version of *name*, after checking it is clean, current and stored."""
    artifact_path(root, name)
    checks.require_clean(root)
    commit = checks.head(root)
    evidence = gather(root, name, commit)
    checks.require_current(root, evidence.stage, name)
    checks.require_stored(root, evidence)
    with registry_lock(root):
        registry = Registry.read(root)
        new = _next_version(registry, name, version, bump)
        if new in registry.versions(name):
            raise UsageError(f"model '{name}' version {new} already exists (at "
                             f"{registry.versions(name)[new].commit[:12]}); choose another "
                             "with --version or --bump")
        held = registry.version_at(name, commit)
        if held:
            raise UsageError(f"commit {commit[:12]} is already model '{name}' {held}; a "
                             "commit is registered once")
        payload = {"action": "register", "model": name, "version": new, "path": evidence.path,
                   "md5": evidence.info.md5, "producer": evidence.stage,
                   "metrics": evidence.metrics, "run": _built_by(root, evidence.info.md5)}
        tag = tags.version_tag(name, new)
        with recording(root, "model register", [name, new]) as recorder:
            recorder.record.detail = {"registry": {**payload, "tag": tag}}
            tags.create(root, tag, commit, _message(
                f"Registering artifact {name} version {new}", payload),
                registry.last_time(name))
    return Outcome(name, new, tag)


def _known(root: Path, registry: Registry, name: str, version: str) -> Evidence:
    versions = registry.versions(name)
    if not versions:
        artifact_path(root, name)  # an unknown name gets its did-you-mean here
        raise UsageError(f"model '{name}' has no registered version yet; register one with "
                         f"'mlbuild model register {name}'")
    version = normalise(version)
    if version not in versions:
        raise UsageError(f"model '{name}' has no version {version}"
                         f"{did_you_mean(version, versions)} (registered: "
                         f"{', '.join(sorted(versions))})")
    return gather(root, name, versions[version].commit)


def check_stage(cfg: config.RegistryConfig, stage: str) -> None:
    """A stage the configuration does not name is refused, with the closest one."""
    if stage not in cfg.stages:
        raise UsageError(f"unknown stage '{stage}'{did_you_mean(stage, cfg.stages)} "
                         f"(configured: {', '.join(cfg.stages)}; add it to registry.stages "
                         "in mlbuild.yaml)")


def _evaluate(root: Path, registry: Registry, cfg: config.RegistryConfig, evidence: Evidence,
              version: str, stage: str) -> tuple[gate.GateReport, str | None]:
    rule = cfg.gate(evidence.name, stage)
    gate.check_metrics_known(rule, evidence)
    holder = registry.holder(evidence.name, stage)
    current = None
    if holder is not None:
        current = (holder, gather(root, evidence.name,
                                  registry.versions(evidence.name)[holder].commit))
    found = [*gate.threshold_checks(rule, evidence), *gate.beat_checks(rule, evidence, current)]
    if rule.contracts:
        found.append(gate.contract_check(root, evidence))
    if rule.verify:
        found.append(checks.verify_check(root, evidence))
    if rule.remote:
        found.append(checks.remote_check(root, evidence))
    return gate.GateReport(evidence.name, version, stage, tuple(found)), holder


def promote(root: Path, name: str, version: str, stage: str, force: bool = False,
            reason: str | None = None) -> Outcome:
    """Assign *stage* to a version once its gate passes (or, forced, with a reason)."""
    cfg = config.load(root)
    cfg.check_models(set(declared(root)) | set(Registry.read(root).names()))
    check_stage(cfg, stage)
    if force and not (reason or "").strip():
        raise UsageError("--force needs --reason TEXT: an override is recorded with its reason")
    version = normalise(version)
    _known(root, Registry.read(root), name, version)
    with registry_lock(root):
        registry = Registry.read(root)  # again: another promotion may have won meanwhile
        evidence = _known(root, registry, name, version)
        if registry.holder(name, stage) == version:
            raise CheckFailedError(f"model '{name}' {version} already holds '{stage}'; "
                                   "nothing changed")
        report, holder = _evaluate(root, registry, cfg, evidence, version, stage)
        payload = {"action": "promote", "model": name, "version": version, "stage": stage,
                   "md5": evidence.info.md5, "gate": report.to_doc(), "replaces": holder,
                   "forced": force and not report.passed, "reason": reason}
        with recording(root, "model promote", [name, version, stage]) as recorder:
            recorder.record.detail = {"registry": payload}
            if not report.passed and not force:
                recorder.record.status = "failed"
                notes.add(root, evidence.commit, "gate", {  # no tag says so: a shared note
                    "model": name, "version": version, "stage": stage, "passed": False,
                    "gate": report.to_doc(), "holder": holder})
                return Outcome(name, version, None, stage, report, holder)
            tag = tags.stage_tag(name, stage, registry.next_counter(name))
            payload["tag"] = tag
            title = (f"Assigning stage {stage} to artifact {name} version {version}"
                     + (" (gate overridden)" if payload["forced"] else ""))
            tags.create(root, tag, evidence.commit, _message(title, payload),
                        registry.last_time(name))
    return Outcome(name, version, tag, stage, report, holder, bool(payload["forced"]))


def _previous(registry: Registry, name: str, stage: str, current: str) -> str:
    """The version that held the stage before the current one."""
    for event in reversed(registry.assignments(name, stage)):
        version = registry.version_at(name, event.commit)
        if event.action == "assign" and version and version != current:
            return version
    raise UsageError(f"model '{name}': no version held '{stage}' before {current}; name one "
                     "with --to VERSION")


def rollback(root: Path, name: str, stage: str, to: str | None, reason: str) -> Outcome:
    """Give *stage* back to the version that held it before (or to *to*): a new assignment,
    so the history keeps the one it replaces."""
    check_stage(config.load(root), stage)
    if not reason.strip():
        raise UsageError("--reason TEXT is required: a rollback is recorded with its reason")
    with registry_lock(root):
        registry = Registry.read(root)
        current = registry.holder(name, stage)
        if current is None:
            if not registry.versions(name):
                _known(root, registry, name, to or "v0.0.1")  # unknown or unregistered: exit 2
            raise UsageError(f"model '{name}': no version holds '{stage}'; nothing to roll "
                             "back")
        target = normalise(to) if to else _previous(registry, name, stage, current)
        evidence = _known(root, registry, name, target)
        if target == current:
            raise UsageError(f"model '{name}' {target} already holds '{stage}'")
        tag = tags.stage_tag(name, stage, registry.next_counter(name))
        payload = {"action": "rollback", "model": name, "version": target, "stage": stage,
                   "md5": evidence.info.md5, "replaces": current, "reason": reason,
                   "forced": False, "tag": tag}
        with recording(root, "model rollback", [name, stage, target]) as recorder:
            recorder.record.detail = {"registry": payload}
            tags.create(root, tag, evidence.commit, _message(
                f"Assigning stage {stage} to artifact {name} version {target} (rollback from "
                f"{current})", payload), registry.last_time(name))
    return Outcome(name, target, tag, stage, None, current)
