"""The `kfp:` block of mlbuild.yaml: resources and retries per stage, the remote's credential
variables by name, KFP's own caching."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.config.settings import PROJECT_FILE
from mlbuild.dvcfmt.yamlio import load_mapping
from mlbuild.errors import ConfigError, check_keys

KFP_KEYS = ("caching", "secret", "env", "defaults", "stages")
RESOURCE_KEYS = ("cpu", "memory", "gpu", "gpu_type", "retries")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The variables DVC's remote plugins read their credentials from, by URL scheme.
CREDENTIALS = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    "azure": ("AZURE_STORAGE_CONNECTION_STRING",),
    "gs": ("GOOGLE_APPLICATION_CREDENTIALS",),
    "oss": ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"),
}


@dataclass(frozen=True)
class Resources:
    """What one KFP task asks of the cluster."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    gpu_type: str = "nvidia.com/gpu"
    retries: int = 0


@dataclass(frozen=True)
class KfpSettings:
    """mlbuild.yaml's `kfp:` block."""

    caching: bool = False  # KFP cannot see the remote's content: mlbuild's run-cache decides
    secret: str = "mlbuild-remote"  # the Kubernetes secret holding the remote's credentials
    env: tuple[str, ...] | None = None  # credential variables; None: by the remote's scheme
    defaults: Resources = Resources()
    stages: tuple[tuple[str, Resources], ...] = ()

    def resources(self, stage: str) -> Resources:
        """A stage's resources: its own entry, its foreach group's, or the defaults."""
        per_stage = dict(self.stages)
        return per_stage.get(stage) or per_stage.get(stage.split("@", 1)[0]) or self.defaults


def _quantity(value: Any, where: str) -> str:
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else value
    if not isinstance(text, str) or not _QUANTITY.match(text):
        raise ConfigError(f"{where}: expected a Kubernetes quantity such as 2, 500m or 4Gi, "
                          f"got {value!r}")
    return text


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: expected an integer >= 0, got {value!r}")
    return value


def resources(block: Any, where: str, base: Resources = Resources()) -> Resources:
    """Validate a resources block (cpu, memory, gpu, gpu_type, retries) over *base*."""
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(RESOURCE_KEYS)}")
    check_keys(block, RESOURCE_KEYS, where)
    gpu_type = block.get("gpu_type", base.gpu_type)
    if not isinstance(gpu_type, str) or not gpu_type:
        raise ConfigError(f"{where}.gpu_type: expected a resource name such as nvidia.com/gpu")
    return Resources(
        cpu=_quantity(block["cpu"], f"{where}.cpu") if "cpu" in block else base.cpu,
        memory=_quantity(block["memory"], f"{where}.memory") if "memory" in block
        else base.memory,
        gpu=_count(block["gpu"], f"{where}.gpu") if "gpu" in block else base.gpu,
        gpu_type=gpu_type,
        retries=_count(block["retries"], f"{where}.retries") if "retries" in block
        else base.retries)


def _env(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _ENV_NAME.match(v)
                                              for v in value):
        raise ConfigError(f"{where}: expected a list of environment variable names (names "
                          "only: the values live in the Kubernetes secret)")
    return tuple(value)


def load_kfp_settings(root: Path) -> KfpSettings:
    """mlbuild.yaml's `kfp:` block, validated (defaults when there is none)."""
    path = root / PROJECT_FILE
    block = load_mapping(path, PROJECT_FILE).get("kfp") if path.is_file() else None
    if block is None:
        return KfpSettings()
    where = f"{PROJECT_FILE}.kfp"
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping")
    check_keys(block, KFP_KEYS, where)
    caching = block.get("caching", False)
    if not isinstance(caching, bool):
        raise ConfigError(f"{where}.caching: expected true or false")
    secret = block.get("secret", KfpSettings.secret)
    if not isinstance(secret, str) or not secret:
        raise ConfigError(f"{where}.secret: expected the name of a Kubernetes secret")
    defaults = resources(block.get("defaults") or {}, f"{where}.defaults")
    stages = block.get("stages") or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"{where}.stages: expected a mapping of stage names")
    return KfpSettings(
        caching=caching, secret=secret,
        env=_env(block["env"], f"{where}.env") if "env" in block else None,
        defaults=defaults,
        stages=tuple((str(name), resources(value, f"{where}.stages.{name}", defaults))
                     for name, value in stages.items()))
