"""The checks around a stage's command: its contracts, and after it ran, that its inputs did
not change meanwhile and that its outputs stay inside the project."""

from __future__ import annotations

from pathlib import Path

from mlbuild.dvcfmt.hashinfo import HashInfo
from mlbuild.engine.staleness import Snapshot
from mlbuild.errors import StageFailedError
from mlbuild.pipeline.model import Stage
from mlbuild.store.boundary import BoundaryError, check_outputs
from mlbuild.store.hashing import Hasher


def _md5(info: HashInfo | None) -> str | None:
    return info.md5 if info is not None else None


def inputs_unchanged(root: Path, stage: Stage, snap: Snapshot, hasher: Hasher) -> None:
    """Fail the stage when a dependency or param changed while it ran: what it read is not
    what the lock would record. Cheap: an unchanged file answers from the stat cache."""
    changed = [d.path for d in stage.deps
               if _md5(hasher.path(d.path)) != _md5(snap.deps.get(d.def_path))]
    if stage.params and not changed:
        from mlbuild.dvcfmt.params import ParamsReader

        fresh = ParamsReader(root)
        changed = [p.path for p in stage.params
                   if fresh.values(p, stage.name) != snap.params.get(p.def_path)]
    if changed:
        raise StageFailedError(
            f"stage '{stage.name}': dependency '{changed[0]}' changed while the stage ran, "
            "so its outputs may come from either version; nothing was recorded and its "
            "previous outputs were put back: run it again once the input is settled"
        )


def outputs_inside(root: Path, stage: Stage, cache_dir: Path) -> None:
    """The command may have made an output (or a file in an output directory) a link out of
    the project: fail the stage before anything of it is committed, so the caller puts its
    previous outputs back (the check before it ran could not see this)."""
    try:
        check_outputs(root, stage, cache_dir)
    except BoundaryError as exc:
        raise StageFailedError(f"{exc}; the stage's command made it so, nothing was "
                               "recorded and its previous outputs were put back") from exc


def check_contracts(root: Path, stage: Stage, side: str) -> None:
    """Validate the stage's inputs (before it runs) or outputs (before any commit). The
    caller serialises calls: schema modules are imported into this process."""
    if not stage.contracts:
        return
    from mlbuild.contracts import load_schema, validate

    if side == "input":  # every schema loads before the command runs, not after
        for contract in stage.contracts:
            load_schema(root, contract.schema)
    for contract in stage.contracts:
        if contract.side == side:
            validate(root, contract, stage.name)
