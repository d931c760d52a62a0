"""`mlbuild exp show`: one row per experiment of the current baseline, params that differ and
every metric, read from the experiments' commits in one `git cat-file` (no checkout).

It stays quick as experiments pile up: the parsed form of each params or metrics file is
remembered under its content's hash (.dvc/tmp/mlbuild/exp-show.json), so PyYAML parses only
files no earlier call has seen, and the params and metrics file names are remembered for the
current dvc.yaml, so the pipeline is not loaded either.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError, UsageError, did_you_mean
from mlbuild.experiments.refs import baseline, list_refs, read_blobs
from mlbuild.files.layout import DVC_FILE, ENV_FILE, PARAMS_FILE, stat_key, state_dir
from mlbuild.gitrepo import head_branch, head_revision

MEMO_VERSION = 1


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
    from mlbuild.dvcfmt.dvcyaml import load_pipeline

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
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            from mlbuild.dvcfmt.yamlio import parse_yaml

            data = parse_yaml(text, path)
    except (ValueError, ConfigError):
        return {}
    return data if isinstance(data, dict) else {}


class _Memo:
    """Flattened params and metrics files by content hash, and the file names by dvc.yaml's
    identity, kept between calls (a memo: when it cannot be read or written, all is parsed)."""

    def __init__(self, root: Path) -> None:
        self.path = state_dir(root) / "exp-show.json"
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        if not isinstance(doc, dict) or doc.get("version") != MEMO_VERSION:
            doc = {}
        flat, files = doc.get("flat"), doc.get("files")
        self.known: dict[str, dict[str, Any]] = {
            k: v for k, v in flat.items() if isinstance(v, dict)} if isinstance(flat, dict) else {}
        self.files: dict[str, Any] = files if isinstance(files, dict) and all(
            isinstance(files.get(k), list) for k in ("key", "params", "metrics")) else {}
        self.used: dict[str, dict[str, Any]] = {}
        self.changed = False

    def flat(self, blob: bytes | None, path: str, prefix: str) -> dict[str, Any]:
        """The file's flattened mapping, keys prefixed with *prefix*."""
        if blob is None:
            return {}
        kind = "json" if path.endswith(".json") else "yaml"
        key = f"{kind}:{hashlib.md5(blob, usedforsecurity=False).hexdigest()}"
        found = self.known.get(key)
        if found is None:
            found = flatten(_parse(blob, path))
            try:  # only what JSON gives back unchanged (no dates, no odd keys) is kept
                self.changed |= json.loads(json.dumps(found)) == found
            except (TypeError, ValueError):
                found = dict(found)
            else:
                self.known[key] = found
        self.used[key] = found
        return {f"{prefix}{k}": v for k, v in found.items()} if prefix else found

    def save(self) -> None:
        """Keep what this call used (entries of removed experiments go)."""
        from mlbuild.dvcfmt.yamlio import write_memo

        if self.changed or self.used.keys() != self.known.keys():
            write_memo(self.path, json.dumps({"version": MEMO_VERSION, "files": self.files,
                                              "flat": self.used}, separators=(",", ":")))


def _pipeline_key(root: Path) -> list[Any] | None:
    keys: list[Any] = []
    for name in (DVC_FILE, PARAMS_FILE):  # params.yaml: dvc.yaml's vars may read it
        try:
            keys.append(list(stat_key((root / name).stat())))
        except OSError:
            keys.append(None)
    return keys if keys[0] is not None else None


def _named_files(root: Path, memo: _Memo) -> tuple[list[str], list[str]]:
    """_files(), answered from the memo while dvc.yaml and params.yaml are unchanged."""
    key = _pipeline_key(root)
    if key is not None and memo.files.get("key") == key:
        return list(memo.files["params"]), list(memo.files["metrics"])
    params, metrics = _files(root)
    memo.files = {"key": key, "params": params, "metrics": metrics}
    memo.changed = True
    return params, metrics


def _row(name: str, rev: str, blobs: dict[str, bytes | None], files: tuple[list[str], list[str]],
         memo: _Memo, baseline: bool = False) -> Row:
    params, metrics = files
    row = Row(name, rev[:7], baseline)
    for path in params:
        prefix = "" if path == PARAMS_FILE else f"{path}:"
        row.params.update(memo.flat(blobs[f"{rev}:{path}"], path, prefix))
    for path in metrics:
        prefix = "" if len(metrics) == 1 else f"{path}:"
        row.metrics.update(memo.flat(blobs[f"{rev}:{path}"], path, prefix))
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
    head = head_revision(root) or baseline(root)
    exps = list_refs(root, head)
    memo = _Memo(root)
    files = _named_files(root, memo)
    paths = files[0] + files[1]
    revs = [head] + [e.commit for e in exps]
    blobs = read_blobs(root, [f"{rev}:{path}" for rev in revs for path in paths])
    base = _row(head_branch(root) or "workspace", head, blobs, files, memo, baseline=True)
    rows = [_row(e.name, e.commit, blobs, files, memo) for e in exps]
    memo.save()
    metric_keys = sorted({k for r in [base, *rows] for k in r.metrics})
    if sort_by is not None:
        if sort_by not in metric_keys:
            raise UsageError(f"--sort-by: no metric '{sort_by}'"
                             f"{did_you_mean(sort_by, metric_keys)}")
        rows.sort(key=_sort_key(sort_by, ascending))
    return Table([base, *rows], _differing([base, *rows]), metric_keys)
