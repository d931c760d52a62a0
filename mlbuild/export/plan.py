"""What `mlbuild export kfp` compiles, decided before the SDK is loaded: the stages and their
edges, the pinned revision, the remote every task shares, each task's resources, and the
refusals (a dirty tree, no remote, an output that cannot travel through the remote)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mlbuild.config.declare import DECL_DIR
from mlbuild.dvcfmt.dvcconfig import default_remote, load
from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.engine.inputs import prepare
from mlbuild.errors import BadInputError, ConfigError
from mlbuild.export.settings import (
    CREDENTIALS,
    KfpSettings,
    Resources,
    load_kfp_settings,
    resources,
)
from mlbuild.gitrepo import GitError, git, head_revision, is_dirty
from mlbuild.pipeline.graph import Graph, select, topo_order
from mlbuild.store.remotes import check_remote
from mlbuild.store.runcache import can_cache


@dataclass(frozen=True)
class Task:
    """One KFP task: one stage, the stages it waits for, what it asks of the cluster."""

    stage: str
    upstream: tuple[str, ...]
    resources: Resources


@dataclass(frozen=True)
class ExportPlan:
    """Everything the compiled pipeline holds."""

    name: str
    repo: str
    revision: str
    remote: str
    caching: bool
    secret: str
    env: tuple[str, ...]  # the remote's credential variables, by name
    tasks: tuple[Task, ...]
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ExportRequest:
    """`mlbuild export kfp`'s options."""

    targets: tuple[str, ...] = ()
    remote: str | None = None
    repo: str | None = None
    name: str | None = None


def pipeline_name(root: Path, name: str | None) -> str:
    """KFP's pipeline name: lower-case letters, digits and dashes."""
    text = re.sub(r"[^a-z0-9-]+", "-", (name or root.name).lower()).strip("-")
    if name is not None and text != name:
        raise BadInputError(f"--name '{name}': a KFP pipeline name holds only lower-case "
                            f"letters, digits and '-' (such as '{text or 'my-pipeline'}')")
    return text[:100] or "mlbuild-pipeline"


def _revision(root: Path) -> str:
    """HEAD's commit, refused when the tree has uncommitted changes: every task checks out
    the commit, so what is not in it would not be built."""
    revision = head_revision(root)
    if revision is None:
        raise BadInputError(f"{root} has no commit to export; commit the project first")
    if is_dirty(root):
        raise BadInputError("the working tree has uncommitted changes, which the KFP tasks "
                            "would not see (each checks out the commit); commit or stash "
                            "them first")
    return revision


def _repo(root: Path, repo: str | None) -> str:
    """Where tasks clone from: --repo, else the git remote 'origin'."""
    if repo:
        return repo
    try:
        return git(root, "remote", "get-url", "origin").decode().strip()
    except GitError:
        raise BadInputError("the repository has no git remote 'origin' for the tasks to clone;"
                            " add one (git remote add origin URL) or pass --repo URL") from None


def _remote(root: Path, name: str | None) -> tuple[str, str, list[str]]:
    """(remote name, its URL, warnings): the shared store every task pulls and pushes."""
    name = name or default_remote(root)
    if name is None:
        raise BadInputError("no DVC remote is configured; the KFP tasks share their outputs "
                            "only through one: add it with 'dvc remote add -d NAME URL' or "
                            "pass --remote NAME")
    check_remote(root, name)
    if not _committed(root, name):
        raise ConfigError(f"DVC remote '{name}' is configured outside the repository's "
                          ".dvc/config (in .dvc/config.local or a user or system config), "
                          "which the tasks' clones do not have; add it there with 'dvc "
                          f"remote add {name} URL' (no --local) and commit it")
    url = str((load(root).get("remote") or {}).get(name, {}).get("url", ""))
    if "://" in url or re.match(r"^[A-Za-z0-9_.-]+@[^:]+:", url):
        return name, url, []
    if not Path(url).is_absolute():
        raise ConfigError(f"DVC remote '{name}' is the relative path '{url}', which each "
                          "task's clone would resolve inside itself; give it the absolute "
                          f"path that every node mounts ('dvc remote modify {name} url "
                          "/mnt/...') or use a cloud remote")
    return name, url, [f"remote '{name}' is a local directory ({url}): every node that runs "
                       "a task must mount it at that same path"]


def _committed(root: Path, name: str) -> bool:
    """Whether the repository's own .dvc/config (what a clone gets) defines the remote."""
    try:
        text = (root / ".dvc" / "config").read_text()
    except OSError:
        return False
    header = re.compile(r"""^\s*\[\s*'?remote\s+"(.+?)"'?\s*\]\s*$""", re.M)
    return name in header.findall(text)


def _travel_check(graph: Graph, order: list[str]) -> None:
    """Refuse an edge the remote cannot carry: a dependency on a `cache: false` output, or
    on a stage whose outputs mlbuild never restores (always_changed, persist)."""
    for name in order:
        stage = graph.stages[name]
        for up in graph.upstream[name]:
            producer = graph.stages[up]
            for out in producer.outs:
                used = next((d.path for d in stage.deps if _overlaps(d.path, out.path)), None)
                if used is None:
                    continue
                if not out.cache:
                    raise ConfigError(
                        f"stage '{name}' depends on '{used}', which stage '{up}' declares with "
                        "cache: false: it cannot move between KFP tasks through the remote; "
                        f"drop cache: false from '{out.path}' (DVC then tracks it in the cache"
                        ", not in git)")
                if not can_cache(producer):
                    raise ConfigError(
                        f"stage '{name}' depends on '{used}' of stage '{up}', which is never "
                        "restored from the remote (always_changed, persist or no deps), so "
                        f"'{name}''s task would have to run it again; make '{up}' cacheable")


def _overlaps(dep: str, out: str) -> bool:
    return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")


def _credential_names(url: str, settings: KfpSettings) -> tuple[str, ...]:
    if settings.env is not None:
        return settings.env
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return CREDENTIALS.get({"s3a": "s3", "azure": "azure", "gcs": "gs"}.get(scheme, scheme), ())


def _resources(root: Path, stage: str, settings: KfpSettings) -> Resources:
    """A stage's resources: its declaration's `resources` block (stages/<name>.yaml) over
    mlbuild.yaml's `kfp:` settings."""
    path = root / DECL_DIR / f"{stage.split('@', 1)[0]}.yaml"
    base = settings.resources(stage)
    if not path.is_file():
        return base
    block = load_mapping(path, path.name).get("resources")
    return base if block is None else resources(block, f"{DECL_DIR}/{path.name}.resources",
                                                base)


def plan_export(root: Path, request: ExportRequest) -> ExportPlan:
    """Check the project and decide the pipeline; nothing is written."""
    revision = _revision(root)
    remote, url, warnings = _remote(root, request.remote)
    settings = load_kfp_settings(root)
    graph = prepare(root, dry=True).graph
    order = select(graph, request.targets) if request.targets else topo_order(graph)
    _travel_check(graph, order)
    tasks = tuple(Task(n, graph.upstream[n], _resources(root, n, settings)) for n in order)
    return ExportPlan(
        name=pipeline_name(root, request.name), repo=_repo(root, request.repo),
        revision=revision, remote=remote, caching=settings.caching, secret=settings.secret,
        env=_credential_names(url, settings), tasks=tasks, warnings=tuple(warnings))

