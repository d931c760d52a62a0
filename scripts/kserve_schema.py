"""Extract the InferenceService v1beta1 schema from KServe's CRD for tests/test_kserve.py.

Usage: python scripts/kserve_schema.py CRD.yaml COMMIT > tests/kserve/inferenceservice.json

CRD.yaml is config/crd/full/serving.kserve.io_inferenceservices.yaml of github.com/kserve/kserve
at COMMIT (the schema the Kubernetes API server validates an InferenceService against). The
full schema is 2 MB; the extract keeps the whole object tree the export writes into (the top
level, spec.predictor, its containers) and, elsewhere, each object's field names with an open
schema, so an unknown or misspelt field still fails; descriptions are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

KEEP = ("apiVersion", "kind", "metadata", "spec")
PREDICTOR_KEEP = ("canaryTrafficPercent", "containers", "minReplicas", "maxReplicas",
                  "containerConcurrency", "timeout", "labels", "annotations")


def _plain(node: Any) -> Any:
    """The schema without its descriptions."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _names_only(node: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """An object schema whose fields outside *keep* accept anything (their names stay)."""
    props = {k: (_plain(v) if k in keep else {}) for k, v in node["properties"].items()}
    return {**{k: v for k, v in _plain(node).items() if k != "properties"}, "properties": props}


def extract(crd: dict[str, Any], commit: str) -> dict[str, Any]:
    """The pruned openAPIV3Schema of the v1beta1 InferenceService."""
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    root = version["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    predictor = _names_only(spec["properties"]["predictor"], PREDICTOR_KEEP)
    spec_out = _names_only(spec, ())
    spec_out["properties"]["predictor"] = predictor
    out = _names_only(root, KEEP)
    out["properties"]["spec"] = spec_out
    source = ("github.com/kserve/kserve config/crd/full/serving.kserve.io_inferenceservices.yaml"
              f" at {commit}, pruned by scripts/kserve_schema.py")
    return {"$comment": source, **out}


def main() -> None:
    """Print the extract as JSON."""
    crd = yaml.safe_load(Path(sys.argv[1]).read_text())
    json.dump(extract(crd, sys.argv[2]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
