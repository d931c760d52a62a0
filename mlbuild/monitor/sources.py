"""The two samples a drift check compares: tables read from files, and the reference found
through lineage, the very training data a model version was built from, read from the
content-addressed cache by the hash its commit's dvc.lock records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError


@dataclass(frozen=True)
class Sample:
    """A table and where it came from (for the report)."""

    frame: Any
    source: str
    md5: str | None = None
    everything: Any = None  # a prediction log's rows of every version and role


def read_table(path: Path, what: str, suffix: str | None = None) -> Any:
    """A data file as a frame; a missing, unreadable or empty file is the user's mistake."""
    from mlbuild.contracts import READERS, read_frame

    suffix = (suffix or path.suffix).lower()
    if suffix not in READERS:
        raise UsageError(f"{what} {path}: cannot read '{suffix or path.name}' files (readable: "
                         f"{', '.join(READERS)})")
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file")
    try:
        frame = read_frame(path, suffix)
    except Exception as exc:  # pandas raises many types for a malformed file
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise UsageError(f"{what} {path}: cannot be read: {detail}") from exc
    if len(frame) == 0:
        raise UsageError(f"{what} {path}: has no rows")
    return frame


def lineage_reference(root: Path, model: str, commit: str, path: str | None) -> Sample:
    """The training data of *model* at *commit*: *path* if given (mlbuild.yaml
    `monitoring.<model>.reference`), else the raw input whose contract the model is served
    under; read from the cache by the hash dvc.lock records at that commit."""
    from mlbuild.registry.evidence import gather, recorded_md5
    from mlbuild.store.cache import Cache

    if path is None:
        evidence = gather(root, model, commit)
        derived = {c.path for c in evidence.contracts if c.side == "output"}
        raw = [c for c in evidence.contracts if c.side == "input" and c.path not in derived]
        if not raw:
            raise UsageError(f"model '{model}': no raw training data with a contract is upstream "
                             "of it; name one with --reference FILE or mlbuild.yaml "
                             f"monitoring.{model}.reference")
        path, md5 = raw[0].path, raw[0].md5
    else:
        md5 = recorded_md5(root, commit, path)
    if md5 is None:
        raise UsageError(f"reference {path}: dvc.lock at {commit[:12]} records no hash for it")
    found = Cache(root).file_of(md5)
    if found is None:
        raise UsageError(f"reference {path} ({md5}) is not in the local cache: 'mlbuild pull' "
                         "fetches it")
    frame = read_table(found, f"reference {path} at {commit[:12]}:", Path(path).suffix)
    return Sample(frame, f"{path}@{commit[:12]}", md5)
