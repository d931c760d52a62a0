"""Online experiments: a canary answering its share of 1,000 requests (sticky per request id,
never for a request that names its version), and a shadow that scores every request without
answering any; the prediction log and /metrics say which version did what."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import Project
from tests.servekit import Server, raw_rows, registered_example

N = 1000


def _two_versions(built: Path, dest: Path) -> Project:
    """The registered example with a second version, v0.0.2, at a later commit."""
    proj = registered_example(built, dest)
    proj.write("NOTES.md", "a second version\n")
    proj.git("add", "NOTES.md")
    proj.git("commit", "-qm", "notes")
    proc = proj.run("model", "register", "model")
    assert proc.returncode == 0, proc.stderr
    return proj


def _entries(logs: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(logs.glob("predictions*.jsonl"))
            for line in f.read_text().splitlines()]


def test_canary_share_and_shadow(built_example: Path, tmp_path: Path) -> None:
    proj = _two_versions(built_example, tmp_path / "example")
    columns, rows = raw_rows(proj, 1)
    doc = {"dataframe_split": {"columns": columns, "data": rows}}
    tensor = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "INT64", "data": rows[0]}]}

    canary = Server(proj, "model@v0.0.1", "--canary", "model@v0.0.2", "--canary-percent", "30",
                    "--log-dir", str(tmp_path / "canary"))
    try:
        canary.wait()
        answered = {}
        for i in range(N):
            status, answer = canary.post("/invocations", doc, {"X-Request-Id": f"c{i}"})
            assert status == 200, answer
            answered[f"c{i}"] = answer["model_version"]
        for i in range(0, N, 50):  # the same id: the same version again
            again = canary.post("/invocations", doc, {"X-Request-Id": f"c{i}"})[1]
            assert again["model_version"] == answered[f"c{i}"]
        for version in ("v0.0.1", "v0.0.2"):  # a request that names its version gets it
            for i in range(10):
                path = f"/v2/models/model/versions/{version}/infer"
                answer = canary.post(path, tensor, {"X-Request-Id": f"c{i}"})[1]
                assert answer["model_version"] == version
        metrics = canary.request("/metrics")[1]
    finally:
        stopped = canary.stop()
    assert stopped.returncode == 0, stopped.stderr
    share = Counter(answered.values())["v0.0.2"] / N * 100
    assert 25 <= share <= 35, share
    assert 'model_version="v0.0.2",role="canary"} 1.0' in metrics
    assert 'endpoint="invocations",model_version="v0.0.2",role="canary"}' in metrics
    logged = {(e["request_id"], e["version"], e["role"]) for e in _entries(tmp_path / "canary")}
    assert {(i, v, "canary" if v == "v0.0.2" else "answered")
            for i, v in answered.items()} <= logged

    shadow = Server(proj, "model@v0.0.1", "--shadow", "model@v0.0.2", "--log-dir",
                    str(tmp_path / "shadow"))
    try:
        shadow.wait()
        answers = [shadow.post("/invocations", doc, {"X-Request-Id": f"s{i}"})[1]
                   for i in range(50)]
        status, doc_ = shadow.post("/v2/models/model/versions/v0.0.2/infer", tensor)
        assert status == 404 and "no version 'v0.0.2'" in doc_["error"]
    finally:
        stopped = shadow.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert {a["model_version"] for a in answers} == {"v0.0.1"}
    entries = _entries(tmp_path / "shadow")
    roles = Counter((e["version"], e["role"]) for e in entries)
    assert roles == {("v0.0.1", "answered"): 50, ("v0.0.2", "shadow"): 50}
    by_role = {(e["request_id"], e["role"]): e["predictions"] for e in entries}
    for i, answer in enumerate(answers):
        assert by_role[(f"s{i}", "answered")] == answer["predictions"]
        assert by_role[(f"s{i}", "shadow")] == answer["predictions"]  # the same model
