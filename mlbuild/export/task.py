"""One KFP task: build exactly one stage against the DVC remote, in a fresh clone of the
pipeline's revision (`mlbuild export task`). The remote's run-cache and the stage's inputs are
pulled; when the remote already has outputs for these exact inputs they are restored, else
the stage runs hermetically with its contracts checked; outputs and the run-cache entry are
pushed; the output hashes, the outcome and the small uncached outputs (metrics) are written
for KFP to show. Upstream stages are only ever restored here, never run: their own tasks
built them.

`task_args` is the one command line both compiled forms run: the cluster's container and the
kfp.local variant's Python component."""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import chdir, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild import api
from mlbuild.dvcfmt.yamlio import write_atomic
from mlbuild.engine.workspace import open_workspace
from mlbuild.errors import BadInputError, StageFailedError, UsageError, did_you_mean
from mlbuild.events import Emit, ignore
from mlbuild.gitrepo import GitError, git
from mlbuild.store.remotes import check_remote

SMALL = 64 * 1024  # an uncached output up to this size is handed back whole (metrics)


def task_args(stage: Any, repo: Any, remote: Any, revision: Any, overrides: Any,
              hashes: Any, outcome: Any, metrics: Any) -> list[Any]:
    """`mlbuild` arguments of one task. The values may be KFP placeholders: they are only
    put in place, never formatted."""
    return ["export", "task", stage, "--repo", repo, "--revision", revision,
            "--remote", remote, "--overrides", overrides, "--hashes-to", hashes,
            "--outcome-to", outcome, "--metrics-to", metrics]


@dataclass(frozen=True)
class TaskRequest:
    """`mlbuild export task`'s arguments."""

    stage: str
    remote: str
    repo: str | None = None  # None: build in the current project, no clone
    revision: str | None = None
    overrides: str = ""
    keep: bool = False


@dataclass
class TaskResult:
    """What the task did and left: outcome, output hashes, uncached small outputs."""

    stage: str
    outcome: str
    message: str = ""
    hashes: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    pushed: int = 0


@contextmanager
def checkout(request: TaskRequest, here: Path) -> Iterator[Path]:
    """A fresh clone of the repository at the revision (removed afterwards unless kept), or
    the current project when no repository is given."""
    if request.repo is None:
        if request.revision:
            raise UsageError("--revision needs --repo: the task clones that revision")
        yield here
        return
    where = Path(tempfile.mkdtemp(prefix="mlbuild-task-"))
    try:
        _clone(request.repo, request.revision or "HEAD", where / "repo")
        yield where / "repo"
    finally:
        if not request.keep:
            shutil.rmtree(where, ignore_errors=True)


def _clone(repo: str, revision: str, dest: Path) -> None:
    try:
        git(dest.parent, "clone", "--quiet", "--no-checkout", repo, str(dest))
    except GitError:
        raise BadInputError(f"cannot clone the repository '{repo}' (git clone failed); check "
                            "the URL and the node's access to it") from None
    try:
        git(dest, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach",
            revision)
    except GitError:
        raise BadInputError(f"revision '{revision}' is not in the repository '{repo}'; "
                            "push it, or export the pipeline again") from None


def use_remote(root: Path, remote: str) -> None:
    """Make *remote* the clone's default, where its data, outputs and run-cache are pulled
    from and pushed to (in .dvc/config.local, which git never carries)."""
    check_remote(root, remote)
    local = root / ".dvc" / "config.local"
    if local.exists() and local.read_text().strip():
        raise BadInputError(f"{local} exists; a task sets the default remote there: build in "
                            "a fresh clone (--repo URL)")
    write_atomic(local, f"[core]\n    remote = {remote}\n")


def _is_default(root: Path, remote: str) -> None:
    """In the user's own checkout the task leaves the configuration alone, so the remote it
    pushes to must be the one a build pulls from: the default."""
    from mlbuild.dvcfmt.dvcconfig import default_remote

    check_remote(root, remote)
    if default_remote(root) != remote:
        raise UsageError(f"remote '{remote}' is not this project's default remote, which a "
                         "build pulls from; make it the default (dvc remote default "
                         f"{remote}) or build in a fresh clone (--repo URL)")


def _known_stage(root: Path, stage: str, overrides: list[str]) -> None:
    from mlbuild.engine.inputs import prepare

    stages = prepare(root, overrides, dry=True).graph.stages
    if stage not in stages:
        raise UsageError(f"unknown stage '{stage}'{did_you_mean(stage, stages)}: a task "
                         "builds exactly one stage (a foreach member by its full name, "
                         "such as 'train@1')")


def run_task(request: TaskRequest, here: Path, emit: Emit = ignore,
             on_notice: Callable[[str], None] | None = None) -> TaskResult:
    """Build one stage against the remote and push what it made (see the module doc)."""
    overrides = shlex.split(request.overrides)
    with checkout(request, here) as root, chdir(root):  # DVC resolves targets from the cwd
        _known_stage(root, request.stage, overrides)
        if request.repo is not None:
            use_remote(root, request.remote)
        else:
            _is_default(root, request.remote)
        run = api.RunRequest(targets=[request.stage], overrides=overrides, jobs=1,
                             pull_remote=True, only=frozenset([request.stage]))
        results = api.run(root, run, emit=emit, on_notice=on_notice)
        failures = api.failed(results)
        if failures:
            raise StageFailedError(failures[0].message)
        mine = results[request.stage]
        result = TaskResult(request.stage, str(mine.outcome), mine.message)
        result.pushed = api.push(root, [request.stage], request.remote)
        _collect(root, result)
        result.pushed += _push_uncached(root, result.hashes, request.remote)
        return result


def _push_uncached(root: Path, hashes: dict[str, str], remote: str) -> int:
    """Send the outputs DVC's targeted push leaves out: `cache: false` metrics and plots,
    which the run-cache entry names (so the next run restores them instead of running)."""
    from mlbuild.store.cache import Cache
    from mlbuild.store.transfer import complete_push, expand

    cache = Cache(root)
    return complete_push(root, cache, expand(cache, list(hashes.items())),
                         remote)


def _collect(root: Path, result: TaskResult) -> None:
    """The stage's output hashes from dvc.lock, and its small uncached outputs' content."""
    ws = open_workspace(root)
    entry = ws.lock.get(result.stage)
    result.hashes = entry.out_md5s() if entry is not None else {}
    for out in ws.graph.stages[result.stage].outs:
        path = root / out.path
        if out.cache or not path.is_file() or path.stat().st_size > SMALL:
            continue
        text = path.read_text(errors="replace")
        try:
            result.metrics[out.path] = json.loads(text) if out.path.endswith(".json") else text
        except json.JSONDecodeError:
            result.metrics[out.path] = text


def write_outputs(result: TaskResult, hashes: Path | None, outcome: Path | None,
                  metrics: Path | None) -> None:
    """The task's outputs as KFP output parameters (small strings in files)."""
    for path, text in ((hashes, json.dumps(result.hashes, sort_keys=True)),
                       (outcome, result.outcome),
                       (metrics, json.dumps(result.metrics, sort_keys=True))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
