"""The helper stage code calls to get exactly its declared params as a config object."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError

DEFAULT_PARAMS_FILE = "params.yaml"
ENV_FILE = ".mlbuild/environment.yaml"


def _project_root() -> Path:
    root = os.environ.get("DVC_ROOT")
    if root:
        return Path(root)
    here = Path.cwd().resolve()
    for cand in (here, *here.parents):
        if (cand / "dvc.yaml").exists() or (cand / ".dvc").is_dir():
            return cand
    return here


def _declared_params(root: Path, stage: str) -> list[tuple[str, str]]:
    """(file, key) pairs the stage declares, files relative to the project root (so a stage's
    wdir and foreach/matrix expansion are honoured); key '' means the whole file. The
    environment file mlbuild adds is not a param of the stage's own."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline

    found = load_pipeline(root).stages.get(stage)
    if found is None:
        raise ConfigError(f"dvc.yaml: no stage named '{stage}' to read params for")
    return [(dep.path, key) for dep in found.params if dep.path != ENV_FILE
            for key in (dep.keys or ("",))]


def _lookup(data: dict[str, Any], dotted: str, where: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{where}: param '{dotted}' not found")
        node = node[part]
    return node


def _insert(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def stage_params(stage: str | None = None) -> Any:
    """Return an OmegaConf config holding only the params the current stage declares.

    The stage name comes from ``DVC_STAGE`` (set by mlbuild and by ``dvc repro``) unless
    given. Keys keep their nesting: a declared ``train.lr`` is read as ``cfg.train.lr``.
    """
    from omegaconf import OmegaConf

    name = stage or os.environ.get("DVC_STAGE")
    if not name:
        raise ConfigError("stage_params(): not running inside a stage (DVC_STAGE is unset)")
    root = _project_root()
    files: dict[str, dict[str, Any]] = {}
    tree: dict[str, Any] = {}
    for fname, key in _declared_params(root, name):
        if fname not in files:
            files[fname] = load_mapping(root / fname)
        if key:
            _insert(tree, key, _lookup(files[fname], key, fname))
        else:
            tree.update(files[fname])
    return OmegaConf.create(tree, flags={"readonly": True})


def _hermetic_setting(key: str, env_var: str, default: int) -> int:
    value = os.environ.get(env_var)
    if value:
        return int(value)
    name = os.environ.get("DVC_STAGE", "")
    env_file = _project_root() / ".mlbuild" / "environment.yaml"
    if name and env_file.is_file():
        stages = load_mapping(env_file).get("stages") or {}
        block = (stages.get(name) or {}).get("hermetic") or {}
        if isinstance(block.get(key), int):
            return int(block[key])
    return default


def stage_seed() -> int:
    """The seed mlbuild hands the stage (hermetic.seed; the same under plain dvc repro)."""
    return _hermetic_setting("seed", "MLBUILD_SEED", 42)


def stage_threads() -> int:
    """The thread count the stage is pinned to (hermetic.threads)."""
    return _hermetic_setting("threads", "MLBUILD_THREADS", 1)
