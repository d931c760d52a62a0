"""A server's life: "not ready" while its model loads, the prediction log written in batches
and rotated by size, and SIGTERM with a request in flight: the request is answered, the log
flushed, the exit clean. The model is a real pickle of the example's model wrapped in a
project module that waits for files, so that each moment is reached without sleeping."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.conftest import Project, _env
from tests.servekit import Server, raw_rows

PIXELS = [f"pixel{i}" for i in range(64)]
SLOW_MODULE = '''
"""The example's model, loaded slowly and answering a 7-row request only when released."""
import os
import time


def _wait(name):
    while not os.path.exists(name):
        time.sleep(0.02)


_wait("go")  # a slow import: the server must say "not ready" meanwhile


class Slow:
    def __init__(self, model):
        self.model = model

    def predict(self, frame):
        if len(frame) == 7:  # the request the test keeps in flight
            open("entered", "w").close()
            _wait("release")
        return self.model.predict(frame)
'''


def _slow_model(proj: Project) -> None:
    """slow.pkl (the example's model inside slowmodel.Slow) and its serving contract."""
    proj.write("slowmodel.py", SLOW_MODULE)
    (proj.path / "go").touch()
    subprocess.run([sys.executable, "-c", "import pickle, slowmodel; open('slow.pkl', 'wb')"
                    ".write(pickle.dumps(slowmodel.Slow(pickle.load(open('models/model.pkl', "
                    "'rb')))))"], cwd=proj.path, env=_env(), check=True)
    (proj.path / "go").unlink()
    yaml = YAML()
    settings = yaml.load(proj.path / "mlbuild.yaml")
    settings.setdefault("serving", {})["slow"] = {"input": "stages.schemas:raw_schema",
                                                  "drop": ["label"]}
    yaml.dump(settings, proj.path / "mlbuild.yaml")


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _log(logs: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    files = sorted(logs.glob("predictions*.jsonl"))
    entries = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    return entries, files


def test_not_ready_while_loading_then_sigterm_answers_the_request_in_flight(
        example_built: Project) -> None:
    proj = example_built
    _slow_model(proj)
    logs = proj.path / "logs"
    server = Server(proj, "slow.pkl", "--log-dir", str(logs), "--log-max-mb", "0.01")
    try:
        server.wait("/v2/health/live")
        assert server.request("/v2/health/ready") == (503, {"ready": False})
        assert server.request("/ping") == (503, "loading\n")
        status, doc = server.post("/v2/models/slow/infer", {"inputs": []})
        assert status == 503 and "still loading" in doc["error"]
        (proj.path / "go").touch()
        server.wait()

        columns, rows = raw_rows(proj, 27)
        answers = {}
        for i, row in enumerate(rows[:20]):
            status, doc = server.post("/invocations", {"dataframe_split": {
                "columns": columns, "data": [row]}}, headers={"X-Request-Id": f"r{i}"})
            assert status == 200, doc
            answers[f"r{i}"] = doc["predictions"]
        held: list[tuple[int, Any]] = []
        inflight = threading.Thread(target=lambda: held.append(server.post(
            "/invocations", {"instances": rows[20:27]}, headers={"X-Request-Id": "inflight"})))
        inflight.start()
        _wait_for(proj.path / "entered")
        server.proc.terminate()  # SIGTERM while the 7-row request is being answered
        (proj.path / "release").touch()
        inflight.join(timeout=60)
        stopped = server.stop()
    finally:
        server.stop()
    assert held and held[0][0] == 200 and len(held[0][1]["predictions"]) == 7
    answers["inflight"] = held[0][1]["predictions"]
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped (SIGTERM): 21 prediction(s) logged" in stopped.stdout

    entries, files = _log(logs)
    assert any(f.name.startswith("predictions-") for f in files), files  # rotated: 0.01 MB
    assert {e["request_id"]: e["predictions"] for e in entries} == answers
    by_id = {e["request_id"]: e for e in entries}
    first = by_id["r0"]
    assert (first["model"], first["role"], first["rows"]) == ("slow", "answered", 1)
    assert first["version"].startswith("file-") and first["latency_ms"] > 0
    assert list(first["features"]) == PIXELS
    assert [first["features"][p][0] for p in PIXELS] == rows[0]
    assert by_id["inflight"]["features"]["pixel10"] == [r[10] for r in rows[20:27]]
    assert all(isinstance(e["time"], float) for e in entries)
