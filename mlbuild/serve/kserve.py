"""`mlbuild serve --export kserve`: a KServe InferenceService (serving.kserve.io/v1beta1) whose
custom predictor container runs `mlbuild serve NAME@VERSION`, and the image recipe it needs.

The manifest pins the exact version (a NAME#STAGE is resolved now, so a later promotion does
not change what an applied manifest runs). A canary is KServe's own: the canary manifest is
the same InferenceService running the candidate version with `canaryTrafficPercent`, applied
over the primary one, so KServe sends that share to the new revision and the rest to the last
rolled-out one (KServe's canary rollout needs its Serverless deployment mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.registry.evidence import gather
from mlbuild.registry.state import Registry
from mlbuild.serve.source import pick

API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER = "kserve-container"  # the name KServe gives (and expects of) the predictor container
PORT = 8080  # KServe's default HTTP port for a custom predictor
RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"},
             "limits": {"cpu": "1", "memory": "1Gi"}}
LABEL_PREFIX = "mlbuild"


@dataclass(frozen=True)
class Pinned:
    """One model version as the export writes it."""

    name: str
    version: str
    commit: str
    md5: str
    path: str  # the artifact's path in the project
    producer: str  # the stage that wrote it (its environment record pins the image)
    ref: str  # what the user named (NAME, NAME@VERSION or NAME#STAGE)

    @property
    def exact(self) -> str:
        """NAME@VERSION, what the container serves."""
        return f"{self.name}@{self.version}"


def pin(root: Path, ref: str) -> Pinned:
    """Resolve NAME, NAME@VERSION or NAME#STAGE to one registered version."""
    name, version, _stage = pick(root, ref)  # a bare NAME: as `mlbuild serve` reads it
    commit = Registry.read(root).versions(name)[version].commit
    evidence = gather(root, name, commit)
    if evidence.info.isdir:
        raise UsageError(f"model '{name}' {version}: {evidence.path} is a directory; "
                         "'mlbuild serve' serves a single pickled model file")
    return Pinned(name, version, commit, evidence.info.md5, evidence.path, evidence.stage, ref)


def _dns_label(text: str) -> str:
    """A Kubernetes object name (DNS-1035 label) made from a model name."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = label if label[:1].isalpha() else f"m-{label}"
    return label[:45].rstrip("-")  # KServe prefixes its own names: keep room for them


def _label_value(text: str) -> str:
    """A Kubernetes label value (the exact text goes into an annotation)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return value.strip("-._")


def image_name(model: Pinned, repository: str | None = None) -> str:
    """The image of a version: REPOSITORY:VERSION (default repository: the model's name)."""
    return f"{repository or _dns_label(model.name)}:{_label_value(model.version)}"


def _probe(path: str, delay: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT}, "initialDelaySeconds": delay,
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}


def _container(model: Pinned, image: str) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": image,
        "command": ["mlbuild", "serve", model.exact, "--host", "0.0.0.0", "--port", str(PORT)],
        "ports": [{"containerPort": PORT, "name": "http1", "protocol": "TCP"}],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "readinessProbe": _probe("/v2/health/ready", 5),
        "livenessProbe": _probe("/v2/health/live", 15),
        "resources": RESOURCES,
    }


def manifest(model: Pinned, image: str, canary_percent: int | None = None) -> dict[str, Any]:
    """The InferenceService for *model*; with a percent, as a canary over the running one."""
    labels = {f"{LABEL_PREFIX}/model": _label_value(model.name),
              f"{LABEL_PREFIX}/model-version": _label_value(model.version),
              "app.kubernetes.io/managed-by": "mlbuild"}
    annotations = {f"{LABEL_PREFIX}/model": model.name,
                   f"{LABEL_PREFIX}/model-version": model.version,
                   f"{LABEL_PREFIX}/ref": model.ref,
                   f"{LABEL_PREFIX}/commit": model.commit,
                   f"{LABEL_PREFIX}/md5": model.md5}
    predictor: dict[str, Any] = {"minReplicas": 1}
    if canary_percent is not None:
        annotations["serving.kserve.io/deploymentMode"] = "Serverless"  # canary needs it
        predictor["canaryTrafficPercent"] = canary_percent
    predictor["containers"] = [_container(model, image)]
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": {"name": _dns_label(model.name), "labels": labels,
                         "annotations": annotations},
            "spec": {"predictor": predictor}}


def _dump(doc: dict[str, Any], header: str) -> str:
    import yaml

    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def export_kserve(root: Path, ref: str, out_dir: Path, *, canary: str | None = None,
                  canary_percent: int | None = None, repository: str | None = None
                  ) -> list[Path]:
    """Write inferenceservice.yaml, Dockerfile and Dockerfile.dockerignore into *out_dir*
    (with a canary, also the -canary manifest and Dockerfile.canary); returns the paths.
    Each version's image is REPOSITORY:VERSION (*repository*: e.g. ghcr.io/org/digits;
    default: the model's name, for a local registry or a kind cluster)."""
    if (canary is None) != (canary_percent is None):
        raise UsageError("--canary and --canary-percent go together")
    if canary_percent is not None and not 0 < canary_percent < 100:
        raise UsageError(f"--canary-percent: expected 1..99, got {canary_percent}")
    primary = pin(root, ref)
    jobs: list[tuple[Pinned, int | None, str, str]] = [
        (primary, None, "", image_name(primary, repository))]
    if canary is not None:
        candidate = pin(root, canary)
        if candidate.name != primary.name:
            raise UsageError(f"--canary {canary}: a canary is another version of the same "
                             f"model ('{primary.name}'), not '{candidate.name}'")
        if candidate.version == primary.version:
            raise UsageError(f"--canary {canary}: that is {primary.exact} itself; name the "
                             "candidate version (for example NAME#staging)")
        jobs.append((candidate, canary_percent, "canary", image_name(candidate, repository)))
    written: list[Path] = []
    for model, percent, role, img in jobs:
        written += _write_pair(root, out_dir, model, img, percent, role)
    return written


def _write_pair(root: Path, out_dir: Path, model: Pinned, image: str, percent: int | None,
                role: str) -> list[Path]:
    """One version's manifest, Dockerfile and the Dockerfile's ignore file."""
    from mlbuild.dvcfmt.yamlio import write_atomic
    from mlbuild.serve.kserve_image import dockerfile, dockerignore

    isvc = out_dir / (f"inferenceservice-{role}.yaml" if role else "inferenceservice.yaml")
    recipe = out_dir / (f"Dockerfile.{role}" if role else "Dockerfile")
    ignore = recipe.with_name(recipe.name + ".dockerignore")  # BuildKit reads it beside -f
    recipe_shown = _shown(root, recipe)
    header = (f"# Generated by 'mlbuild serve --export kserve' for {model.exact} "
              f"(commit {model.commit[:12]}, md5 {model.md5}).\n"
              "# From the project root: build and push its image, then apply this file:\n"
              f"#   docker build -f {recipe_shown} -t {image} . && docker push {image}\n"
              f"#   kubectl apply -f {_shown(root, isvc)}\n")
    write_atomic(isvc, _dump(manifest(model, image, percent), header))
    write_atomic(recipe, dockerfile(root, model, image, recipe_shown))
    write_atomic(ignore, dockerignore())
    return [isvc, recipe, ignore]


def _shown(root: Path, path: Path) -> str:
    """*path* as the user would type it from the project root."""
    full = path.absolute()
    return full.relative_to(root.absolute()).as_posix() if full.is_relative_to(
        root.absolute()) else str(full)
