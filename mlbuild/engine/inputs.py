"""What a build needs before anything runs: params.yaml and dvc.yaml brought up to date, the
workspace opened, .dvc-tracked data present (restored or pulled and checked against its
contracts), and the sandbox policy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbuild.config.settings import load_project_config
from mlbuild.dvcfmt.dvcyaml import state_dir
from mlbuild.engine.workspace import Workspace, open_workspace
from mlbuild.errors import MlbuildError
from mlbuild.files.layout import ENV_FILE

if TYPE_CHECKING:  # loaded only when a build may run
    from mlbuild.contracts import Contract
    from mlbuild.sandbox.policy import Sandbox

Notify = Callable[[str], None]


def prepare(root: Path, overrides: list[str] | None = None, dry: bool = False) -> Workspace:
    """Recompose params.yaml, recompile dvc.yaml, and load the workspace.

    With *dry*, nothing is written: the would-be files are used from memory.
    """
    if not ((root / "configs").is_dir() or (root / "stages").is_dir() or overrides):
        return open_workspace(root)  # a hand-written DVC project: nothing to generate
    from mlbuild.config.compose import sync_params
    from mlbuild.config.declare import sync_dvcyaml

    params = sync_params(root, overrides or [], dry=dry)
    compiled = sync_dvcyaml(root, check=dry, params_text=params if dry else None)
    if not dry:
        return open_workspace(root)
    pending = {"params.yaml": params, ENV_FILE: compiled.environment}
    return open_workspace(root, compiled.dvcyaml,
                          {k: v for k, v in pending.items() if v is not None})


def make_sandbox(ws: Workspace, strict: bool) -> Sandbox:
    """The sandbox policy for this build."""
    from mlbuild.sandbox.policy import Sandbox

    environment: dict[str, Any] = {}
    if (ws.root / ENV_FILE).is_file():
        environment = ws.checker.params.file(ENV_FILE)
    outs = [o.path for s in ws.graph.stages.values() for o in s.outs]
    return Sandbox(root=ws.root, scratch=state_dir(ws.root), environment=environment,
                   project=load_project_config(ws.root), all_outs=outs, strict=strict,
                   in_cache=functools.partial(_cache_object, ws))


def _cache_object(ws: Workspace, rel: str) -> Path | None:
    """The cache object with a file's current content, when the stat cache already knows its
    hash (no reading): hermetic stages' undeclared changes are put back from it."""
    try:
        info = ws.hasher.cached(ws.root / rel)
    except (OSError, MlbuildError):
        return None
    if info is None or not ws.cache.has_md5(info.md5):
        return None
    return ws.cache.object_path(info.md5)


def data_contracts(root: Path, paths: list[str]) -> list[Contract]:
    """Project contracts (mlbuild.yaml `contracts`) on files at or under *paths*."""
    from mlbuild.contracts import Contract

    found = []
    for data_path, ref in load_project_config(root).contracts:
        if any(data_path == p or data_path.startswith(p.rstrip("/") + "/") for p in paths):
            found.append(Contract(path=data_path, schema=ref, side="data"))
    return found


def check_contracts(root: Path, paths: list[str]) -> int:
    """Validate tracked data against its contracts; returns how many files were checked."""
    from mlbuild.contracts import validate

    contracts = data_contracts(root, paths)
    for contract in contracts:
        if (root / contract.path).is_file():
            validate(root, contract, None)
    return len(contracts)


def _remote_name(root: Path) -> str:
    from mlbuild.dvcfmt.dvcconfig import default_remote

    return default_remote(root) or "(none configured)"


def ensure_tracked_data(ws: Workspace, notify: Notify | None = None) -> None:
    """Restore missing .dvc-tracked inputs from the cache, or pull them from the remote (every
    pulled object verified against its hash before it is checked out)."""
    from mlbuild.store.tracked import restore_missing

    need_pull = restore_missing(ws.root, ws.tracked, ws.cache)
    if not need_pull:
        return
    from mlbuild.store.transfer import pull_tracked

    outs = [t for t in ws.tracked if t.dvcfile in need_pull and not (ws.root / t.path).exists()]
    if notify is not None:
        count = sum(int(t.info.nfiles or 1) for t in outs)
        notify(f"pulling {count} missing object(s) of {', '.join(need_pull)} from remote "
               f"'{_remote_name(ws.root)}'")
    pull_tracked(ws.root, ws.cache, outs)
    lost = restore_missing(ws.root, outs, ws.cache)
    if lost:
        from mlbuild.store.remotes import RemoteError

        raise RemoteError(
            f"the data of {', '.join(lost)} is neither in the local cache nor on the remote; "
            "push it from a machine that has it, or check the remote with 'mlbuild data status'")
    check_contracts(ws.root, [t.path for t in outs])


def fetch_inputs(ws: Workspace, pull: bool, pull_remote: bool, notify: Notify | None) -> None:
    """Missing .dvc-tracked data, and with *pull_remote* the remote's run-cache, saying so."""
    if pull:
        ensure_tracked_data(ws, notify)
    if pull_remote:
        from mlbuild.store import remotes as remote

        if notify is not None:
            notify(f"fetching the run-cache from remote '{_remote_name(ws.root)}'")
        remote.fetch_run_cache(ws.root, None)
