"""`mlbuild exp show`: one row per experiment of the current baseline, params that differ and
every metric, read from the experiments' commits in one `git cat-file` (no checkout)."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.dvcyaml import load_pipeline
from mlbuild.dvcfmt.yamlio import parse_yaml
from mlbuild.errors import ConfigError, UsageError, did_you_mean
from mlbuild.experiments.refs import baseline, list_refs, read_blobs
from mlbuild.files.layout import ENV_FILE, PARAMS_FILE
from mlbuild.gitrepo import GitError, git


@dataclass
class Row:
    """One experiment (or the baseline) with its flattened params and metrics."""

    name: str
    rev: str
    baseline: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    """The comparison: rows best first (the baseline first of all), and its columns."""

    rows: list[Row]
    params: list[str]  # the params whose values differ between rows
    metrics: list[str]

    def to_json(self) -> list[dict[str, Any]]:
        """One object per row, as `exp show --json` prints them."""
        return [{"name": r.name, "rev": r.rev, "baseline": r.baseline,
                 "params": r.params, "metrics": r.metrics} for r in self.rows]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict)
                    else {f"{prefix}{key}": value})
    return flat


def _files(root: Path) -> tuple[list[str], list[str]]:
    """The params files and metrics files the pipeline names (at the baseline)."""
    pipeline = load_pipeline(root)
    params = {PARAMS_FILE}
    metrics: list[str] = []
    for stage in pipeline.stages.values():
        params |= {p.path for p in stage.params if p.path != ENV_FILE}
        metrics += [o.path for o in stage.outs if o.kind == "metrics"]
    return sorted(params), sorted(set(metrics))


def workspace_metrics(work: Path) -> dict[str, Any]:
    """The flattened metrics a built workspace holds, keyed as `exp show` keys them."""
    _, metrics = _files(work)
    found: dict[str, Any] = {}
    for path in metrics:
        prefix = "" if len(metrics) == 1 else f"{path}:"
        blob = (work / path).read_bytes() if (work / path).is_file() else None
        found.update(flatten(_parse(blob, path), prefix))
    return found


@functools.lru_cache(maxsize=4096)  # experiments often share a file's exact content
def _parse(blob: bytes | None, path: str) -> dict[str, Any]:
    if blob is None:
        return {}
    text = blob.decode("utf-8", errors="replace")
    try:
        data = json.loads(text) if path.endswith(".json") else parse_yaml(text, path)
    except (ValueError, ConfigError):
        return {}
    return data if isinstance(data, dict) else {}


def _row(name: str, rev: str, blobs: dict[str, bytes | None], params: list[str],
         metrics: list[str], baseline: bool = False) -> Row:
    row = Row(name, rev[:7], baseline)
    for path in params:
        prefix = "" if path == PARAMS_FILE else f"{path}:"
        row.params.update(flatten(_parse(blobs[f"{rev}:{path}"], path), prefix))
    for path in metrics:
        prefix = "" if len(metrics) == 1 else f"{path}:"
        row.metrics.update(flatten(_parse(blobs[f"{rev}:{path}"], path), prefix))
    return row


def _differing(rows: list[Row]) -> list[str]:
    keys = sorted({k for r in rows for k in r.params})
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({json.dumps(r.params.get(k), default=str) for r in rows}) > 1]


def _sort_key(metric: str, ascending: bool) -> Any:
    def key(row: Row) -> tuple[int, float]:
        value = row.metrics.get(metric)
        if not isinstance(value, int | float) or math.isnan(float(value)):
            return (1, 0.0)  # rows without the metric go last
        return (0, float(value) if ascending else -float(value))
    return key


def table(root: Path, sort_by: str | None = None, ascending: bool = False) -> Table:
    """The experiments of HEAD with the baseline's row first."""
    head = baseline(root)
    exps = list_refs(root, head)
    params, metrics = _files(root)
    revs = [head] + [e.commit for e in exps]
    blobs = read_blobs(root, [f"{rev}:{path}" for rev in revs for path in params + metrics])
    base = _row(_branch(root) or "workspace", head, blobs, params, metrics, baseline=True)
    rows = [_row(e.name, e.commit, blobs, params, metrics) for e in exps]
    metric_keys = sorted({k for r in [base, *rows] for k in r.metrics})
    if sort_by is not None:
        if sort_by not in metric_keys:
            raise UsageError(f"--sort-by: no metric '{sort_by}'"
                             f"{did_you_mean(sort_by, metric_keys)}")
        rows.sort(key=_sort_key(sort_by, ascending))
    return Table([base, *rows], _differing([base, *rows]), metric_keys)


def _branch(root: Path) -> str | None:
    try:
        return git(root, "symbolic-ref", "--short", "-q", "HEAD").decode().strip() or None
    except GitError:
        return None
