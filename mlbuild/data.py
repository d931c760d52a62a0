"""Data versioning for programs: add, pull, push, status, fsck and gc. No printing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlbuild import remote
from mlbuild.cache import Cache
from mlbuild.contracts import Contract, validate
from mlbuild.datacheck import Corrupt, GcPlan, fsck, gc_plan
from mlbuild.errors import IntegrityError, UsageError
from mlbuild.lockfile import LockFile
from mlbuild.settings import load_project_config
from mlbuild.tracked import find_pointers


def _contracts_for(root: Path, paths: list[str]) -> list[Contract]:
    """Project contracts (mlbuild.yaml `contracts`) on files at or under *paths*."""
    found = []
    for data_path, ref in load_project_config(root).contracts:
        if any(data_path == p or data_path.startswith(p.rstrip("/") + "/") for p in paths):
            found.append(Contract(path=data_path, schema=ref, side="data"))
    return found


def check_contracts(root: Path, paths: list[str]) -> int:
    """Validate tracked data against its contracts; returns how many files were checked."""
    contracts = _contracts_for(root, paths)
    for contract in contracts:
        if (root / contract.path).is_file():
            validate(root, contract, "data")
    return len(contracts)


def add(root: Path, paths: list[str]) -> list[str]:
    """Validate contracts first (bad data never gets in), then track like `dvc add`."""
    rel = []
    for path in paths:
        full = (Path.cwd() / path).resolve()
        if not full.exists():
            raise UsageError(f"cannot add '{path}': no such file or directory")
        try:
            rel.append(full.relative_to(root).as_posix())
        except ValueError as exc:
            raise UsageError(f"cannot add '{path}': it is outside the project") from exc
    check_contracts(root, rel)
    return remote.add(root, rel)


def lock_hashes(root: Path) -> set[str]:
    """Every object the current dvc.lock and .dvc pointer files name."""
    used = {out.info.md5 for out in find_pointers(root, [])}
    for entry in LockFile(root).stages.values():
        for out in entry.get("outs") or []:
            if isinstance(out, dict) and out.get("md5"):
                used.add(str(out["md5"]))
    return used


@dataclass
class PullResult:
    """What a pull did."""

    fetched: int
    corrupt: list[Corrupt] = field(default_factory=list)
    validated: int = 0


def pull(root: Path, targets: list[str], remote_name: str | None) -> PullResult:
    """Fetch objects and run-cache, verify every needed object, then check out."""
    fetched = remote.fetch(root, targets, remote_name)
    cache = Cache(root)
    bad = fsck(cache, only=_expanded(cache, lock_hashes(root)), remove=True)
    if bad:
        first = bad[0]
        raise IntegrityError(
            f"{len(bad)} object(s) fetched from the remote are corrupted and were not checked "
            f"out; first: {first.path} (expected md5 {first.expected}, found {first.actual})"
        )
    remote.checkout(root, targets)
    validated = check_contracts(root, [o.path for o in find_pointers(root, [])])
    return PullResult(fetched=fetched, validated=validated)


def _expanded(cache: Cache, used: set[str]) -> set[str]:
    from mlbuild.datacheck import expand

    return expand(cache, used)


def push(root: Path, targets: list[str], remote_name: str | None) -> int:
    """Refuse to push corrupted objects; then push data, outputs and the run-cache."""
    cache = Cache(root)
    bad = fsck(cache, only=_expanded(cache, lock_hashes(root)))
    if bad:
        raise IntegrityError(
            f"{len(bad)} local cache object(s) are corrupted, nothing was pushed; first: "
            f"{bad[0].path} (run 'mlbuild data fsck --repair')"
        )
    return remote.push(root, targets, remote_name)


def status(root: Path, remote_name: str | None) -> dict[str, str]:
    """Per path: not pushed ('new'), missing locally ('deleted'), missing everywhere."""
    return remote.cloud_status(root, remote_name)


def gc(root: Path, force: bool, all_commits: bool = False, all_branches: bool = False,
       all_tags: bool = False) -> GcPlan:
    """Plan (and with force, do) removal of unreferenced cache objects. Objects the current
    dvc.lock and .dvc files need are always kept, whatever DVC reports."""
    used = remote.used_hashes(root, all_commits, all_branches, all_tags) | lock_hashes(root)
    cache = Cache(root)
    plan = gc_plan(cache, used)
    if force:
        for path in plan.remove:
            path.chmod(0o644)
            path.unlink()
    return plan
