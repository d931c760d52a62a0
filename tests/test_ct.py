"""`mlbuild ct` end to end on the embedded example: nothing new does nothing; drift in served
traffic plus new labelled data that includes the new distribution retrains, verifies, registers
and promotes because the gate passes; a deliberately worse model is refused by the gate and the
serving version stays; every decision is in the run history; bad settings are exit 2."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.servekit import Server, raw_rows, registered_example
from tests.test_monitor import send, shifted

# The test project's prod gate: a threshold, verify, contracts and the remote. (The example's
# own gate also asks to beat the current version's accuracy, which each version measures on
# its own validation split: new data changes that split, so the comparison is left out here.)
GATE = """\
registry:
  stages: [dev, staging, prod]
  models:
    model:
      prod:
        metrics: {accuracy: ">= 0.95"}
        verify: true
"""


def _ct(proj: Project, *args: str) -> tuple[int, dict[str, object]]:
    proc = proj.run("ct", *args, "--json", timeout=900)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _set_gate(proj: Project) -> None:
    text = proj.read("mlbuild.yaml")
    start = text.index("registry:")
    end = text.index("\n", text.index("verify: true", start))
    (proj.path / "mlbuild.yaml").write_text(text[:start] + GATE + text[end + 1:])
    proj.git("commit", "-qam", "gate for the test")


def _add_shifted_training_rows(proj: Project) -> None:
    path = proj.path / "data/raw/train.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    labelled = [[int(v) for v in row] for row in rows[:700]]
    with open(path, "a", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(
            [[row[0], *shifted([row[1:]])[0]] for row in labelled])
    assert proj.run("data", "add", "data/raw").returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "more data: the brighter scanner's digits")


def test_the_continuous_training_loop(built_example: Path, tmp_path: Path) -> None:
    proj = registered_example(built_example, tmp_path / "example")
    assert proj.run("verify").returncode == 0  # v0.0.1's commit: the prod gate asks for it
    _set_gate(proj)
    proc = proj.run("model", "promote", "model", "v0.0.1", "--to", "prod")
    assert proc.returncode == 0, proc.stderr + proc.stdout

    code, doc = _ct(proj, "--on", "data,code,drift")  # nothing new: nothing done
    assert code == 0 and doc["fired"] == [] and doc["steps"] == []
    assert doc["outcome"] == "nothing to do: no trigger fired"
    drift = {t["trigger"]: t for t in doc["triggers"]}["drift"]  # type: ignore[index, union-attr]
    assert drift["skipped"] and "no served rows" in drift["reason"]

    server = Server(proj, "model#prod")
    server.wait()
    columns, rows = raw_rows(proj, 10_000)
    send(server, columns, shifted(rows))
    assert server.stop().returncode == 0
    code, doc = _ct(proj, "--on", "drift", "--dry-run")
    assert code == 0 and doc["fired"] == ["drift"] and doc["steps"] == []

    _add_shifted_training_rows(proj)
    code, doc = _ct(proj, "--on", "drift")
    assert code == 0, doc
    assert [s["step"] for s in doc["steps"]] == [  # type: ignore[union-attr, index]
        "build", "commit", "verify", "push", "register", "promote"]
    assert doc["new_version"] == "v0.0.2" and doc["outcome"] == "promoted v0.0.2 to prod"
    assert doc["gate"]["passed"] is True  # type: ignore[index]
    assert "prod=v0.0.2" in proj.run("model", "list").stdout
    assert proj.git("status", "--porcelain", "--untracked-files=no").stdout == ""

    code, doc = _ct(proj)  # again: the new version has answered nothing, nothing changed
    assert code == 0 and doc["fired"] == [] and doc["serving"] == "v0.0.2"

    params = proj.read("configs/model/lightgbm.yaml")
    (proj.path / "configs/model/lightgbm.yaml").write_text(
        params.replace("n_estimators: 60", "n_estimators: 1").replace(
            "learning_rate: 0.1", "learning_rate: 0.01"))
    proj.git("commit", "-qam", "a deliberately worse model")
    code, doc = _ct(proj, "--on", "code")
    assert code == 1 and doc["fired"] == ["code"] and doc["new_version"] == "v0.0.3"
    assert doc["gate"]["passed"] is False  # type: ignore[index]
    assert doc["outcome"] == "gate refused v0.0.3: v0.0.2 keeps serving"
    assert "prod=v0.0.2" in proj.run("model", "list").stdout

    runs = json.loads(proj.run("log", "--command", "ct", "--json").stdout)
    outcomes = [r["detail"]["ct"]["outcome"] for r in runs]
    assert outcomes[0].startswith("gate refused") and outcomes[2] == "promoted v0.0.2 to prod"
    assert [r["status"] for r in runs[:1]] == ["failed"]


@pytest.mark.parametrize(("settings", "words"), [
    ("ct:\n  schedule: fortnightly\n", "cannot parse 'fortnightly' as a schedule"),
    ("ct:\n  on: [data, drfit]\n", "unknown trigger 'drfit'"),
    ("ct:\n  promote_too: prod\n", "unknown key 'promote_too'"),
])
def test_bad_ct_settings_are_one_line_and_exit_2(example_built: Project, settings: str,
                                                   words: str) -> None:
    with open(example_built.path / "mlbuild.yaml", "a") as handle:
        handle.write(settings)
    proc = example_built.run("ct", "--dry-run")
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_ct_with_nothing_registered_would_train_and_a_bad_stage_is_refused(
        example_built: Project) -> None:
    proc = example_built.run("ct", "--dry-run", "--on", "data,schedule")
    assert proc.returncode == 0, proc.stderr
    assert "has no registered version yet" in proc.stdout and "would retrain (data)" in proc.stdout
    proc = example_built.run("ct", "--promote-to", "production", "--dry-run")
    assert proc.returncode == 2 and "production" in proc.stderr
    proc = example_built.run("ct", "--on", "weather")
    assert proc.returncode == 2 and "unknown trigger 'weather'" in proc.stderr


def test_the_schedule_is_due_once_its_interval_has_passed_since_the_last_training(
        built_example: Path, tmp_path: Path) -> None:
    proj = registered_example(built_example, tmp_path / "example")  # registered just now
    settings = proj.path / "mlbuild.yaml"
    base = settings.read_text()
    settings.write_text(base + "ct:\n  schedule: weekly\n")
    code, doc = _ct(proj, "--on", "schedule", "--dry-run")
    trigger = doc["triggers"][0]  # type: ignore[index]
    assert code == 0 and doc["fired"] == [] and "not due" in trigger["reason"]
    settings.write_text(base + "ct:\n  schedule: 0.0002h\n")  # 0.72 s
    time.sleep(1.0)
    code, doc = _ct(proj, "--on", "schedule", "--dry-run")
    assert code == 0 and doc["fired"] == ["schedule"]
    assert doc["outcome"] == "would retrain (schedule); dry run"
