"""`serve NAME#STAGE` follows the registry: the server runs in a clone, the team promotes in
the original; the server fetches the new tags, switches versions with no failed request,
and refuses to switch to a version whose artifact cannot be fetched."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import Project
from tests.servekit import Server, raw_rows, registered_example


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 120
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


class Traffic:
    """Single-row requests in a loop on a thread, GAP seconds apart: (status, model_version)
    of each."""

    # Back to back, the loop and the server answering it took a whole core for the minute of
    # rebuilding and registering that this test waits through; 100 requests a second still
    # put dozens of requests on each side of every switch.
    GAP = 0.01

    def __init__(self, server: Server, row: list[int], columns: list[str]) -> None:
        self.seen: list[tuple[int, Any]] = []
        self._stop = threading.Event()
        doc = {"dataframe_split": {"columns": columns, "data": [row]}}

        def run() -> None:
            while not self._stop.is_set():
                try:
                    status, answer = server.post("/invocations", doc)
                except OSError as exc:  # a refused or dropped connection: a failed request
                    status, answer = -1, {"model_version": repr(exc)}
                self.seen.append((status, answer.get("model_version")))
                self._stop.wait(self.GAP)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait."""
        self._stop.set()
        self._thread.join()


def test_follow_switches_on_promotion_and_keeps_serving_through_a_bad_version(
        built_example: Path, tmp_path: Path) -> None:
    team = registered_example(built_example, tmp_path / "team")
    _ok(team.run("model", "promote", "model", "v0.0.1", "--to", "staging"))
    subprocess.run(["git", "clone", "-q", str(team.path), str(tmp_path / "server")], check=True)
    here = Project(tmp_path / "server")
    remote = str(team.path / "dvc-storage")
    assert here.dvc("remote", "modify", "--local", "storage", "url", remote).returncode == 0
    server = Server(here, "model#staging", "--follow-interval", "0.2")
    try:
        server.wait()
        assert server.request("/v2/models/model")[1]["versions"] == ["v0.0.1"]
        columns, rows = raw_rows(team, 1)
        traffic = Traffic(server, rows[0], columns)
        try:
            team.write("NOTES.md", "a new version, same model\n")
            team.git("add", "NOTES.md")
            team.git("commit", "-qm", "notes")
            _ok(team.run("model", "register", "model"))
            _ok(team.run("model", "promote", "model", "v0.0.2", "--to", "staging"))
            _until(lambda: ("v0.0.2" in {v for _, v in traffic.seen[-5:]}), "never switched")

            _ok(team.run("run", "model.n_estimators=5"))
            team.git("commit", "-qam", "five trees")
            _ok(team.run("push"))
            _ok(team.run("model", "register", "model", "--bump", "minor"))
            lock = team.read("dvc.lock")
            md5 = lock[lock.index("path: models/model.pkl"):].split("md5: ", 1)[1].split()[0]
            (team.path / "dvc-storage/files/md5" / md5[:2] / md5[2:]).unlink()  # lost
            _ok(team.run("model", "promote", "model", "v0.1.0", "--to", "staging", "--force",
                         "--reason", "test"))
            _until(lambda: 'model_version="v0.1.0",reason="load"' in server.request(
                "/metrics")[1], "the lost version was never tried")
            before = len(traffic.seen)
            _until(lambda: len(traffic.seen) > before + 5, "no traffic")
        finally:
            traffic.stop()
        metrics = server.request("/metrics")[1]
    finally:
        server.stop()
    assert {s for s, _ in traffic.seen} == {200}, "a request failed during the switch"
    versions = [v for _, v in traffic.seen]
    switch = versions.index("v0.0.2")
    assert set(versions[:switch]) == {"v0.0.1"} and set(versions[switch:]) == {"v0.0.2"}
    assert 'mlbuild_serve_model_version_info{model="model",model_version="v0.0.2",' \
           'role="answered"} 1.0' in metrics
    assert 'model_version="v0.0.1",role="answered"} 0.0' in metrics

