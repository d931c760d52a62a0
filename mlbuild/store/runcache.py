"""DVC's run-cache (.dvc/cache/runs/<key[:2]>/<key>/<value>): save and look up builds."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.lockfile import LockEntry
from mlbuild.dvcfmt.yamlio import dump_yaml, parse_yaml
from mlbuild.files.temp import tmp_beside
from mlbuild.pipeline.model import OutKind, Stage

_EXCLUDE = ("size", "nfiles")


def _filtered(node: Any) -> Any:
    if isinstance(node, list):
        return [_filtered(v) for v in node]
    if isinstance(node, dict):
        return {k: _filtered(v) for k, v in node.items() if k not in _EXCLUDE}
    return node


def _sha256(entry: dict[str, Any]) -> str:
    body = json.dumps(_filtered(entry), sort_keys=True).encode("utf-8")
    return hashlib.sha256(body).hexdigest()


def can_cache(stage: Stage) -> bool:
    """DVC's rule: a command, deps and outs, not always_changed, no persistent outputs."""
    return bool(stage.deps or stage.params) and bool(stage.outs) and not (
        stage.always_changed or any(o.persist for o in stage.outs)
    )


def saves_run_cache(stage: Stage) -> bool:
    """DVC records a run only when every output but metrics and plots is cached."""
    return can_cache(stage) and all(o.cache or o.kind != OutKind.OUTS for o in stage.outs)


def run_key(entry: LockEntry) -> str:
    """The key of a build: its lock entry with outputs reduced to their paths (DVC's
    `_get_stage_hash`)."""
    keyed = copy.deepcopy(entry.raw)
    keyed["outs"] = [out["path"] for out in keyed.get("outs", [])]
    return _sha256(keyed)


def valid_out(item: Any) -> bool:
    """A recorded output mlbuild can restore: a string path, an md5 (never a path that would
    lead out of the cache), and numbers where DVC writes numbers."""
    from mlbuild.store.hashing import is_object_id

    if not (isinstance(item, dict) and isinstance(item.get("path"), str) and item["path"]
            and is_object_id(item.get("md5"))):
        return False
    return all(item.get(key) is None or (isinstance(item[key], int)
                                         and not isinstance(item[key], bool))
               for key in ("size", "nfiles"))


def well_formed(data: Any) -> bool:
    """A run-cache entry worth trusting: a mapping whose outs are a non-empty list of
    valid outputs. Anything else (hand-edited, truncated, from an odd remote) is skipped,
    as DVC skips an entry it cannot read."""
    outs = data.get("outs") if isinstance(data, dict) else None
    return isinstance(outs, list) and bool(outs) and all(map(valid_out, outs))


class RunCache:
    """The run-cache directory beside the object cache."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir / "runs"
        self.locks = cache_dir / "mlbuild" / "runs-lock"

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """Hold the lock named by a run-cache key: builds sharing this cache (experiment
        variants) run a stage with given inputs once; the others wait here, then find its
        entry. An flock, so it is released however the holder ends."""
        self.locks.mkdir(parents=True, exist_ok=True)
        with open(self.locks / key, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def lookup(self, key: str) -> LockEntry | None:
        """The newest recorded lock entry for this key, if any."""
        folder = self.dir / key[:2] / key
        try:
            names = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return None
        for path in names:
            if path.name.endswith(".tmp"):
                continue
            try:
                data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
            except Exception:
                continue
            if well_formed(data):
                return LockEntry.parse(data)
        return None

    def save(self, entry: LockEntry) -> None:
        """Record a finished build under its key (atomic; existing entries kept)."""
        key, value = run_key(entry), _sha256(entry.raw)
        folder = self.dir / key[:2] / key
        target = folder / value
        if target.exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = tmp_beside(target)
        try:
            tmp.write_text(dump_yaml(entry.raw), encoding="utf-8")
            os.replace(tmp, target)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            from mlbuild.files.diskspace import full_error, is_full

            if is_full(exc):
                raise full_error(target, "a run-cache entry") from exc
            raise
