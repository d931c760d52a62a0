"""`mlbuild monitor` end to end: the registered example served by a real server, real traffic
from the held-out raw test set (no drift) and then shifted traffic (drift, the features named),
the reference found through lineage; the HTML page; every kind of bad input (exit 2)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import browser
from tests.conftest import Project
from tests.servekit import Server, raw_rows, registered_example

# one worker builds this module's shared fixture once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("monitor")

BRIGHTER = 5  # a scanner that reads every inked pixel 5 levels darker: most features drift


def shifted(rows: list[list[int]]) -> list[list[int]]:
    """The rows as the brighter scanner would send them."""
    return [[min(16, v + BRIGHTER) if v else 0 for v in row] for row in rows]


def send(server: Server, columns: list[str], rows: list[list[int]], batch: int = 20) -> None:
    """Score every row through MLflow's /invocations, *batch* rows a request."""
    for start in range(0, len(rows), batch):
        status, answer = server.post("/invocations", {"dataframe_split": {
            "columns": columns, "data": rows[start:start + batch]}})
        assert status == 200, answer


@pytest.fixture(scope="module")
def monitored(built_example: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Project]:
    """The registered example after it answered the whole raw test set, then the same rows
    shifted; the clean traffic's log is kept apart in clean-log/."""
    proj = registered_example(built_example, tmp_path_factory.mktemp("monitor") / "example")
    columns, rows = raw_rows(proj, 10_000)
    log = proj.path / ".mlbuild/predictions/model"
    for name, traffic in (("clean", rows), ("shifted", shifted(rows))):
        server = Server(proj, "model")
        server.wait()
        send(server, columns, traffic)
        assert server.stop().returncode == 0
        if name == "clean":
            log.rename(proj.path / "clean-log")
    yield proj


def test_served_test_data_does_not_drift_and_the_reference_comes_from_lineage(
        monitored: Project) -> None:
    proc = monitored.run("monitor", "model", "--log-dir", "clean-log", "--json",
                         "--fail-on-drift")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and doc["drifted"] is False and doc["version"] == "v0.0.1"
    assert doc["reference"].startswith("data/raw/train.csv@")  # the version's training data
    assert doc["data_drift"]["share_drifted"] < 0.5
    assert len(doc["data_drift"]["columns"]) == 64
    assert doc["contract"] == {"rows": 359, "failing": 0, "share": 0.0, "first_problem": None}
    assert doc["prediction_drift"]["drifted"] is False
    assert doc["prediction_drift"]["kind"] == "categorical"


def test_shifted_traffic_drifts_names_the_features_and_draws_them(monitored: Project) -> None:
    proc = monitored.run("monitor", "--fail-on-drift", "--html", "drift.html")
    assert proc.returncode == 1, proc.stderr  # --fail-on-drift: drift is exit 1
    assert "DRIFT:" in proc.stdout and "pixel" in proc.stdout.split("drifted:", 1)[1]
    doc = monitored.run_json("monitor", "model")
    drifted = doc["drifted_columns"]
    assert isinstance(drifted, list) and len(drifted) >= 32 and doc["drifted"] is True
    page = (monitored.path / "drift.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == drifted  # one histogram per drifted feature
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for _, data in images)
    with browser.page() as tab:  # as a person opens it: every picture drawn, every column
        tab.goto((monitored.path / "drift.html").as_uri())
        drawn = tab.evaluate("Array.from(document.images)"
                             ".filter(i => i.complete && i.naturalWidth > 0).length")
        assert drawn == len(drifted) and tab.locator("table tr").count() == 64 + 1
        assert tab.locator("p.drift").first.inner_text().startswith("DRIFT:")
    last = json.loads(monitored.run("log", "-n", "1", "--json").stdout)[0]
    assert last["command"] == "monitor"  # each check is kept in the run history
    assert last["detail"]["monitor"]["drifted_columns"] == drifted


def test_bad_input_is_one_line_and_exit_2(monitored: Project, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("pixel0\n")
    cases = {
        ("--since", "3 days"): "expected a duration",
        ("--current", str(tmp_path / "missing.csv")): "no such file",
        ("--current", str(other)): "lacks feature column(s) pixel0",
        ("--reference", str(other)): "lacks feature column(s) pixel0",
        ("--current", str(empty)): "has no rows",
        ("nomodel",): "unknown model 'nomodel'",
        ("model#staging",): "no version of model 'model' holds stage 'staging'",
        ("--log-dir", str(tmp_path)): "no served rows",
    }
    time.sleep(1.5)
    cases[("--since", "1s")] = "no served rows of model 'model' in the last 1 s"
    for args, words in cases.items():
        proc = monitored.run("monitor", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_log_cut_mid_line_is_read_up_to_the_cut(monitored: Project) -> None:
    log = monitored.path / "clean-log/predictions.jsonl"
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"time": 1, "features": {"pixel0": [1, 2')  # being written
    rotated = log.with_name("predictions-20260101T000000.jsonl")
    rotated.write_bytes(b'{"truncated\n' + whole[: whole.index(b"\n") + 1])
    doc = monitored.run_json("monitor", "model", "--log-dir", "clean-log")
    assert doc["contract"]["rows"] == 359 + 20  # the cut line left out, one whole request added
    assert "1 unreadable line(s) skipped" in doc["current"]
    log.write_bytes(whole)
    rotated.unlink()


def test_labels_joined_on_request_ids_give_the_served_accuracy(monitored: Project,
                                                               tmp_path: Path) -> None:
    """Labels that agree with every answer: accuracy 1; that agree with none on half the
    requests: degraded against the registered accuracy (exit 1 with --fail-on-drift)."""
    entries = [json.loads(line) for line in
               (monitored.path / "clean-log/predictions.jsonl").read_text().splitlines()]
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    lines = ["request_id,row,label"]
    wrong = ["request_id,row,label"]
    for n, entry in enumerate(entries):
        for row, answer in enumerate(entry["predictions"]):
            lines.append(f"{entry['request_id']},{row},{answer}")
            wrong.append(f"{entry['request_id']},{row},{answer if n % 2 else (answer + 1) % 10}")
    good.write_text("\n".join(lines) + "\n")
    bad.write_text("\n".join(wrong) + "\n")
    doc = monitored.run_json("monitor", "model", "--log-dir", "clean-log", "--labels", str(good))
    perf = doc["performance"]
    assert perf["rows"] == 359 and perf["current"] == 1.0 and perf["degraded"] is False
    assert 0.9 < perf["registered"] <= 1.0  # the accuracy v0.0.1 was registered with
    proc = monitored.run("monitor", "model", "--log-dir", "clean-log", "--labels", str(bad),
                         "--fail-on-drift")
    assert proc.returncode == 1 and "DEGRADED" in proc.stdout, proc.stdout + proc.stderr
    (tmp_path / "nolabel.csv").write_text("request_id,answer\nx,1\n")
    proc = monitored.run("monitor", "model", "--log-dir", "clean-log", "--labels",
                         str(tmp_path / "nolabel.csv"))
    assert proc.returncode == 2 and "missing: label" in proc.stderr


def test_a_shadow_is_compared_with_the_answering_version_on_the_same_traffic(
        built_example: Path, tmp_path: Path) -> None:
    from tests.test_serve_canary import _two_versions

    proj = _two_versions(built_example, tmp_path / "example")
    server = Server(proj, "model@v0.0.1", "--shadow", "model@v0.0.2")
    server.wait()
    columns, rows = raw_rows(proj, 10_000)
    send(server, columns, rows)
    assert server.stop().returncode == 0
    proc = proj.run("monitor", "model@v0.0.1", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    versions = doc["versions"]
    assert [(v["version"], v["role"], v["rows"]) for v in versions["versions"]] == [
        ("v0.0.1", "answered", 359), ("v0.0.2", "shadow", 359)]
    assert versions["shadow_agreement"] == {"rows": 359, "share": 1.0}  # the same model bytes
    assert versions["prediction_difference"]["different"] is False
    assert doc["contract"]["rows"] == 359  # shadow copies are not counted twice
    human = proj.run("monitor", "model@v0.0.1").stdout
    assert "shadow agrees with the answer on 100.0% of 359 rows" in human
