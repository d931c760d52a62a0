"""The helper stage code calls to get exactly its declared params as a config object."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError
from mlbuild.files.layout import DVC_FILE, ENV_FILE

_ABSENT = object()  # OmegaConf.select's default: tells a missing key from a None value


def _project_root() -> Path:
    root = os.environ.get("DVC_ROOT")
    if root:
        return Path(root)
    here = Path.cwd().resolve()
    for cand in (here, *here.parents):
        if (cand / DVC_FILE).exists() or (cand / ".dvc").is_dir():
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
    files: dict[str, Any] = {}
    cfg: Any = OmegaConf.create({})
    for fname, key in _declared_params(root, name):
        if fname not in files:
            files[fname] = OmegaConf.create(load_mapping(root / fname))
        if not key:
            cfg = OmegaConf.merge(cfg, files[fname])
            continue
        value = OmegaConf.select(files[fname], key, default=_ABSENT)
        if value is _ABSENT:
            raise ConfigError(f"{fname}: param '{key}' not found (declared by stage '{name}')")
        OmegaConf.update(cfg, key, value, force_add=True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _hermetic_setting(key: str, env_var: str, default: int) -> int:
    value = os.environ.get(env_var)
    if value:
        return int(value)
    name = os.environ.get("DVC_STAGE", "")
    env_file = _project_root() / ENV_FILE
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
