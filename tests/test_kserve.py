"""`mlbuild serve --export kserve` on the registered example: the InferenceService manifests
validated against KServe's own CRD schema (tests/kserve/inferenceservice.json, extracted by
scripts/kserve_schema.py), and the image recipe's steps run in a copy of the project."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO, Project, _env, copy_tree

# one worker builds this module's shared fixture once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("kserve")

SCHEMA = json.loads((REPO / "tests/kserve/inferenceservice.json").read_text())
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

def _strict(schema: Any) -> Any:
    """The schema as the API server applies it with strict field validation (kubectl's
    default, --validate=strict): an object's fields outside its properties are errors."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


VALIDATOR = jsonschema.Draft7Validator(_strict(SCHEMA))


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@pytest.fixture(scope="module")
def registry(built_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The built example with a DVC remote outside it, model v0.0.1 registered and v0.0.2
    (another learning rate) registered and in staging; every object pushed."""
    dest = tmp_path_factory.mktemp("kserve")
    copy_tree(built_example, dest / "example")
    proj = Project(dest / "example")
    assert proj.dvc("remote", "add", "-d", "-f", "shared", str(dest / "dvcremote")).returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    _ok(proj.run("push"))
    _ok(proj.run("model", "register", "model"))
    _ok(proj.run("run", "model.learning_rate=0.2"))
    proj.git("add", "-A")
    proj.git("commit", "-qm", "learning rate 0.2")
    _ok(proj.run("push"))
    _ok(proj.run("model", "register", "model"))
    _ok(proj.run("model", "promote", "model", "v0.0.2", "--to", "staging"))
    return proj


def _export(proj: Project, ref: str, out: str, canary: str = "",
            percent: str = "") -> dict[str, Any]:
    """`mlbuild serve REF --export kserve --out OUT [--canary C --canary-percent P]`: the
    files it wrote, or the one-line error of a refusal (exit 2)."""
    extra = [*(["--canary", canary] if canary else []),
             *(["--canary-percent", percent] if percent else [])]
    proc = proj.run("serve", ref, "--export", "kserve", "--out", out, *extra, timeout=120)
    if proc.returncode == 2:
        assert proc.stderr.startswith("mlbuild: error: ") and proc.stderr.count("\n") == 1
        return {"error": "UsageError", "message": proc.stderr}
    assert proc.returncode == 0, proc.stderr + proc.stdout
    written = [Path(line.removeprefix("wrote ")) for line in proc.stdout.splitlines()
               if line.startswith("wrote ")]
    return {"paths": [str(p.relative_to(proj.path) if p.is_absolute() else p) for p in written]}


def _yaml(path: Path) -> dict[str, Any]:
    return dict(YAML(typ="safe").load(path.read_text()))


def _commit(proj: Project, tag: str) -> str:
    return proj.git("rev-list", "-n1", tag).stdout.strip()


def _check_common(doc: dict[str, Any], version: str) -> dict[str, Any]:
    """What every exported manifest must be; returns its predictor container."""
    errors = sorted(e.message for e in VALIDATOR.iter_errors(doc))
    assert errors == []
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert doc["kind"] == "InferenceService"
    meta = doc["metadata"]
    assert DNS_1035.match(meta["name"]) and meta["name"] == "model"
    assert meta["labels"]["mlbuild/model"] == "model"
    assert meta["labels"]["mlbuild/model-version"] == version
    assert all(LABEL_VALUE.match(v) for v in meta["labels"].values())
    assert meta["annotations"]["mlbuild/model-version"] == version
    (container,) = doc["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["command"] == ["mlbuild", "serve", f"model@{version}", "--host",
                                    "0.0.0.0", "--port", "8080"]
    assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert set(container["resources"]) == {"requests", "limits"}
    return dict(container)


def test_manifest_pins_the_version_and_passes_kserves_schema(registry: Project) -> None:
    out = _export(registry, "model@v0.0.1", "deploy")
    assert out["paths"] == ["deploy/inferenceservice.yaml", "deploy/Dockerfile",
                            "deploy/Dockerfile.dockerignore"]
    doc = _yaml(registry.path / "deploy/inferenceservice.yaml")
    container = _check_common(doc, "v0.0.1")
    assert container["image"] == "model:v0.0.1"
    assert "canaryTrafficPercent" not in doc["spec"]["predictor"]
    assert doc["metadata"]["annotations"]["mlbuild/commit"] == _commit(registry, "model@v0.0.1")
    # a stage is resolved now: the manifest names the version that holds it
    staged = _export(registry, "model#staging", "staged")
    doc = _yaml(registry.path / staged["paths"][0])
    _check_common(doc, "v0.0.2")
    assert doc["metadata"]["annotations"]["mlbuild/ref"] == "model#staging"


def test_canary_manifest_carries_the_split(registry: Project) -> None:
    out = _export(registry, "model@v0.0.1", "canary", "model#staging", "10")
    assert out["paths"][3:] == ["canary/inferenceservice-canary.yaml", "canary/Dockerfile.canary",
                                "canary/Dockerfile.canary.dockerignore"]
    primary = _yaml(registry.path / "canary/inferenceservice.yaml")
    candidate = _yaml(registry.path / "canary/inferenceservice-canary.yaml")
    _check_common(primary, "v0.0.1")
    assert _check_common(candidate, "v0.0.2")["image"] == "model:v0.0.2"
    # the same InferenceService, applied over the primary: KServe splits 10 / 90
    assert candidate["metadata"]["name"] == primary["metadata"]["name"]
    assert candidate["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert candidate["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == \
        "Serverless"


def test_schema_check_is_strict(registry: Project) -> None:
    _export(registry, "model@v0.0.1", "strict")
    doc = _yaml(registry.path / "strict/inferenceservice.yaml")
    doc["spec"]["predictor"]["canaryTraficPercent"] = 10  # misspelt
    doc["spec"]["predictor"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8080]
    messages = " ".join(e.message for e in VALIDATOR.iter_errors(doc))
    assert "canaryTraficPercent" in messages and "[8080]" in messages


@pytest.mark.parametrize(("ref", "canary", "percent", "expected"), [
    ("model@v9.9.9", "", "", "has no version v9.9.9"),
    ("nomodel@v0.0.1", "", "", "unknown model 'nomodel'"),
    ("model@v0.0.1", "model#staging", "100", "--canary-percent: expected 1..99"),
    ("model@v0.0.1", "model#prod", "5", "no version of model 'model' holds stage 'prod'"),
    ("model#staging", "model@v0.0.2", "5", "that is model@v0.0.2 itself"),
])
def test_bad_input_is_a_usage_error(registry: Project, ref: str, canary: str, percent: str,
                                    expected: str) -> None:
    out = _export(registry, ref, "bad", canary, percent)
    assert out["error"] == "UsageError" and expected in out["message"], out
    assert not (registry.path / "bad").exists()


def test_export_refuses_a_shadow_and_an_unknown_target(registry: Project) -> None:
    proc = registry.run("serve", "model@v0.0.1", "--export", "kserve", "--shadow",
                        "model#staging", "--out", "refused")
    assert proc.returncode == 2 and "it has no shadow" in proc.stderr
    proc = registry.run("serve", "model@v0.0.1", "--export", "seldon", "--out", "refused")
    assert proc.returncode == 2 and "the one target is 'kserve'" in proc.stderr
    assert not (registry.path / "refused").exists()


def _run_steps(dockerfile: str) -> list[str]:
    """The shell commands of the Dockerfile's RUN instructions (continuations joined)."""
    text = dockerfile.replace("\\\n", " ")
    steps = [line[4:] for line in text.splitlines() if line.startswith("RUN ")]
    return [re.sub(r"^--mount=\S+\s+", "", s) for s in steps]


def test_recipe_checks_out_the_version_and_fetches_it_from_the_remote(
        registry: Project, tmp_path: Path) -> None:
    _export(registry, "model@v0.0.1", "image")
    recipe = registry.read("image/Dockerfile")
    env = registry.read(".mlbuild/environment.yaml")
    python = re.search(r"^python: (\S+)", env, re.M)
    assert python and f"FROM python:{python[1]}-slim" in recipe
    sklearn = re.search(r"^      scikit-learn: (\S+)", env, re.M)
    assert sklearn and f"'scikit-learn=={sklearn[1]}'" in recipe
    manifest = _yaml(registry.path / "image/inferenceservice.yaml")
    cmd = json.loads(recipe.split("CMD ", 1)[1])
    assert cmd == manifest["spec"]["predictor"]["containers"][0]["command"]
    ignored = registry.read("image/Dockerfile.dockerignore").split()
    assert ".dvc/cache" in ignored and ".dvc/config.local" in ignored
    # the build's own steps, in a copy of the build context without the cache: the version's
    # commit is checked out and its artifact comes from the DVC remote, verified
    context = tmp_path / "context"
    shutil.copytree(registry.path, context, symlinks=True,
                    ignore=shutil.ignore_patterns("cache", "tmp", "__pycache__"))
    steps = [s for s in _run_steps(recipe) if s.startswith(("git checkout", "mlbuild model"))]
    assert len(steps) == 2
    for step in steps:
        argv = shlex.split(step.split(" && ")[0])
        argv = [sys.executable, "-m", "mlbuild", *argv[1:]] if argv[0] == "mlbuild" else argv
        argv = [a.replace("/tmp/model.check", str(tmp_path / "model.check")) for a in argv]
        _ok(subprocess.run(argv, cwd=context, env=_env(), capture_output=True, text=True,
                           timeout=120))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=context, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert head == _commit(registry, "model@v0.0.1")
    fetched = hashlib.md5((tmp_path / "model.check").read_bytes()).hexdigest()
    assert fetched == manifest["metadata"]["annotations"]["mlbuild/md5"]
    assert fetched != hashlib.md5(registry.path.joinpath("models/model.pkl").read_bytes()
                                  ).hexdigest()  # v0.0.2 is the working tree's model
