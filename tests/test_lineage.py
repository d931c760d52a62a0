"""Lineage, impact, audit and the KPIs on a scripted history: commits by four people on set
dates, a params change and a sweep, a worse model that the prod gate refuses, a rollback, a
drift finding from `mlbuild monitor`, new data and a retrain by `mlbuild ct`. Every answer is
checked against the values worked out by hand from that script (hours after 2026-03-02)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, copy_tree
from tests.errcheck import error_line
from tests.servekit import raw_rows
from tests.test_ct import GATE, _add_shifted_training_rows
from tests.test_monitor import shifted

# one worker builds this module's shared fixture once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("lineage")

START = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
HOUR = 3600


def at(day: int, hour: int) -> int:
    """Day *day* (0: 2026-03-02) at *hour* UTC, in seconds."""
    return START + day * 86400 + hour * HOUR


def _env(who: str, when: int) -> dict[str, str]:
    email = f"{who.lower()}@example.com"
    return {"GIT_AUTHOR_NAME": who, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": who,
            "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": f"{when} +0000",
            "GIT_COMMITTER_DATE": f"{when} +0000"}


class Script:
    """The project and the people acting on it, each at a set time."""

    def __init__(self, proj: Project) -> None:
        self.proj = proj
        self.commits: dict[str, str] = {}

    def ml(self, who: str, when: int, *args: str, code: int = 0) -> Any:
        proc = self.proj.run(*args, env=_env(who, when), timeout=900)
        assert proc.returncode == code, f"{args}: {proc.stderr}{proc.stdout}"
        return proc

    def commit(self, who: str, when: int, label: str, message: str) -> None:
        env = {**_env(who, when), "PATH": "/usr/bin:/bin"}
        for args in (["add", "-A"], ["commit", "-qm", message]):
            subprocess.run(["git", *args], cwd=self.proj.path, env=env, check=True)
        self.commits[label] = self.proj.git("rev-parse", "HEAD").stdout.strip()

    def trees(self, who: str, when: int, label: str, n: int, rate: str = "0.1") -> None:
        path = self.proj.path / "configs/model/lightgbm.yaml"
        text = path.read_text()
        for key, value in (("n_estimators", str(n)), ("learning_rate", rate)):
            lines = [f"{line.split(':')[0]}: {value}" if line.startswith(f"{key}:") else line
                     for line in text.splitlines()]
            text = "\n".join(lines) + "\n"
        path.write_text(text)
        self.ml(who, when, "compile")
        self.commit(who, when, label, f"model: {n} trees, learning rate {rate}")

    def build(self, who: str, when: int, label: str) -> None:
        self.ml(who, when, "run")
        self.commit(who, when, label, "build")

    def release(self, who: str, day: int, hour: int, version: str) -> None:
        """Push, verify and register at *hour*, promote to prod an hour later."""
        self.ml(who, at(day, hour), "push")
        self.ml(who, at(day, hour), "verify")
        self.ml(who, at(day, hour), "model", "register", "model")
        self.ml(who, at(day, hour + 1), "model", "promote", "model", version, "--to", "prod")


@pytest.fixture(scope="module")
def history(built_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Script:
    dest = tmp_path_factory.mktemp("lineage") / "project"
    copy_tree(built_example, dest)
    shutil.rmtree(dest / ".git")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    text = (dest / "mlbuild.yaml").read_text()
    start = text.index("registry:")
    end = text.index("\n", text.index("verify: true", start))
    (dest / "mlbuild.yaml").write_text(text[:start] + GATE + text[end + 1:])
    s = Script(Project(dest))
    s.commit("Alice", at(0, 9), "C1", "the digits pipeline")
    s.release("Alice", 0, 10, "v0.0.1")
    s.trees("Bob", at(1, 9), "C2", 80)
    s.ml("Bob", at(1, 10), "exp", "run", "model.n_estimators=70,90", "-j", "2")
    s.build("Bob", at(1, 12), "C3")
    s.release("Bob", 1, 13, "v0.0.2")
    s.trees("Carol", at(2, 9), "C4", 1, "0.01")
    s.build("Carol", at(2, 10), "C5")
    s.ml("Carol", at(2, 11), "push")
    s.ml("Carol", at(2, 11), "model", "register", "model")
    s.ml("Carol", at(2, 12), "model", "promote", "model", "v0.0.3", "--to", "prod", code=1)
    s.ml("Alice", at(2, 13), "model", "rollback", "model", "--stage", "prod",
         "--reason", "v0.0.2 misreads sevens")
    s.trees("Carol", at(2, 14), "C6", 80)
    s.build("Carol", at(2, 15), "C7")
    columns, rows = raw_rows(s.proj, 400)
    with open(dest / "brighter.csv", "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([columns, *shifted(rows)])
    s.ml("Erin", at(3, 9), "monitor", "model#prod", "--current", str(dest / "brighter.csv"))
    (dest / "brighter.csv").unlink()
    _add_shifted_training_rows(s.proj)  # commits with the test's identity: amend it
    subprocess.run(["git", "commit", "-q", "--amend", "--no-edit", "--reset-author"], cwd=dest,
                   env={**_env("Dave", at(3, 10)), "PATH": "/usr/bin:/bin"}, check=True)
    s.commits["C8"] = s.proj.git("rev-parse", "HEAD").stdout.strip()
    ct = json.loads(s.ml("Dave", at(3, 11), "ct", "--on", "data", "--json").stdout)
    assert ct["outcome"] == "promoted v0.0.4 to prod", ct
    s.commits["C9"] = s.proj.git("rev-parse", "HEAD").stdout.strip()
    return s


def _json(s: Script, *args: str) -> Any:
    return json.loads(s.ml("Tester", at(4, 0), *args, "--json").stdout)


def test_the_kpis_equal_the_values_worked_out_by_hand(history: Script) -> None:
    doc = _json(history, "kpi", "--since", "2026-03-02", "--until", "2026-03-05")
    cpd = doc["commits_per_day"]
    # pipeline code: C1 (Alice), C2 (Bob), C4 and C6 (Carol); builds, data and ct's commit
    # change no code, and the sweep's experiment commits are not the team's history
    assert cpd["days"] == 4
    assert {a.split(" <")[0]: v["commits"] for a, v in cpd["authors"].items()} == {
        "Alice": 1, "Bob": 1, "Carol": 2}
    assert cpd["per_day_per_author"] == pytest.approx(4 / 4 / 3)
    model = doc["models"]["model"]
    # v0.0.1: C1 09:00 -> 11:00; v0.0.2: C2 day 1 09:00 -> 14:00; v0.0.4: C4 day 2 09:00 ->
    # day 3 11:00 (C2 and C3 were already in prod)
    assert model["cycle_time"] == {"count": 3, "median": 5 * HOUR, "p90": 26 * HOUR}
    assert model["defect_rate"] == {"promotions": 3, "defects": 1, "defective": ["v0.0.2"],
                                    "rate": pytest.approx(1 / 3)}
    # the refused gate (day 2 12:00) opens the incident, the rollback joins it, ct's v0.0.4
    # (day 3 11:00) repairs it
    assert model["time_to_repair"] == {"count": 1, "median": 23 * HOUR, "p90": 23 * HOUR,
                                       "open": 0}
    # drift found day 3 09:00 -> v0.0.4 in prod at 11:00
    assert model["time_to_respond"] == {"count": 1, "median": 2 * HOUR, "p90": 2 * HOUR,
                                        "open": 0}
    assert doc["overall"]["defect_rate"]["rate"] == pytest.approx(1 / 3)
    later = _json(history, "kpi", "--since", "2026-03-04", "--until", "2026-03-05")
    assert later["models"]["model"]["cycle_time"]["count"] == 1  # only v0.0.4's promotion
    assert later["commits_per_day"]["authors"].keys() == {"Carol <carol@example.com>"}
    text = history.ml("Tester", at(4, 0), "kpi", "--since", "2026-03-02").stdout
    assert "defect rate      1/3 = 33%" in text and "prod promotions later rolled back" in text


def test_lineage_of_a_model_version_a_path_and_a_stage(history: Script) -> None:
    c = history.commits
    doc = _json(history, "lineage", "model@v0.0.2")
    assert doc["revision"] == c["C3"] and doc["verify"]["passed"] is True
    assert [s["stage"] for s in doc["stages"]] == ["prepare", "train"]
    prepare, train = doc["stages"]
    data = {i["path"]: i for i in prepare["inputs"]}["data/raw/train.csv"]
    assert data["pointer"] == "data.dvc" and data["introduced"]["commit"] == c["C1"]
    assert data["introduced"]["author"] == "Alice <alice@example.com>"
    assert data["introduced"]["time"] == at(0, 9)
    assert train["params"]["params.yaml"]["model"]["n_estimators"] == 80
    assert "stages/train.py" in {code["path"] for code in train["code"]}
    assert train["environment"]["python"] and train["environment"]["packages"]["lightgbm"]
    newer = _json(history, "lineage", "model#prod")
    assert newer["version"] == "v0.0.4" and newer["revision"] == c["C9"]
    data = {i["path"]: i for i in newer["stages"][0]["inputs"]}["data/raw/train.csv"]
    assert data["introduced"]["commit"] == c["C8"] and data["md5"] != {
        i["path"]: i for i in prepare["inputs"]}["data/raw/train.csv"]["md5"]
    worse = _json(history, "lineage", "models/model.pkl", "--rev", c["C5"])
    assert worse["verify"] is None and worse["stages"][-1]["params"]["params.yaml"][
        "model"]["n_estimators"] == 1
    tried = history.proj.git("for-each-ref", "refs/exps", "--format=%(objectname)").stdout
    assert {_json(history, "lineage", "models/model.pkl", "--rev", rev)["stages"][-1][
        "params"]["params.yaml"]["model"]["n_estimators"] for rev in tried.split()} == {70, 90}
    assert [s["stage"] for s in _json(history, "lineage", "evaluate")["stages"]] == [
        "prepare", "train", "evaluate"]
    raw = _json(history, "lineage", "data/raw/train.csv")
    assert raw["stages"] == [] and raw["data"]["pointer"] == "data.dvc"
    assert raw["data"]["introduced"]["commit"] == c["C8"]
    dot = history.ml("Tester", at(4, 0), "lineage", "model@v0.0.1", "--dot").stdout
    assert dot.startswith("digraph lineage {") and '"stage:train" -> "data:models/model.pkl"' in dot
    text = history.ml("Tester", at(4, 0), "lineage", "model@v0.0.1").stdout
    assert "verify: passed" in text and "tracked by data.dvc" in text


def test_impact_of_the_first_data_and_of_the_path(history: Script) -> None:
    first = _json(history, "lineage", "model@v0.0.1")["stages"][0]["inputs"]
    md5 = {i["path"]: i["md5"] for i in first}["data/raw/train.csv"]
    doc = _json(history, "impact", md5)
    assert [v["version"] for v in doc["versions"]] == ["v0.0.1", "v0.0.2", "v0.0.3"]
    assert [(a["version"], a["action"]) for a in doc["assignments"]] == [
        ("v0.0.1", "promote"), ("v0.0.2", "promote"), ("v0.0.1", "rollback")]
    assert not any(a["holds_now"] for a in doc["assignments"])
    assert {o["stage"] for o in doc["outputs"]} == {"prepare", "train", "evaluate"}
    every = _json(history, "impact", "data/raw/train.csv")
    assert len(every["hashes"]) == 2
    assert [v["version"] for v in every["versions"]][-1] == "v0.0.4"
    assert every["assignments"][-1]["holds_now"] is True


def test_audit_tells_the_models_life_in_order(history: Script) -> None:
    doc = _json(history, "audit", "model")
    assert [(e["kind"], e["version"]) for e in doc["events"]] == [
        ("register", "v0.0.1"), ("promote", "v0.0.1"), ("register", "v0.0.2"),
        ("promote", "v0.0.2"), ("register", "v0.0.3"), ("gate", "v0.0.3"),
        ("rollback", "v0.0.1"), ("drift", "v0.0.1"), ("register", "v0.0.4"),
        ("promote", "v0.0.4"), ("ct", "v0.0.4")]
    assert [e["who"].split(" <")[0] for e in doc["events"][:7]] == [
        "Alice", "Alice", "Bob", "Bob", "Carol", "Carol", "Alice"]
    assert doc["holders"] == {"prod": "v0.0.4"}
    assert [v["verify"] is not None for v in doc["versions"]] == [True, True, False, True]
    md = history.ml("Tester", at(4, 0), "audit", "model", "--md").stdout
    assert "gate refused v0.0.3 for prod: accuracy" in md
    assert "rolled prod back to v0.0.1 from v0.0.2: v0.0.2 misreads sevens" in md
    assert "monitoring found drift in v0.0.1's traffic" in md


@pytest.mark.parametrize(("args", "words"), [
    (("lineage", "modle@v0.0.1"), "unknown model 'modle'"),
    (("lineage", "model@v9.9.9"), "has no version v9.9.9"),
    (("lineage", "trian"), "unknown target 'trian'"),
    (("lineage", "train", "--rev", "nosuchrev"), "unknown revision 'nosuchrev'"),
    (("impact", "0123456789abcdef"), "neither a path nor a hash"),
    (("audit", "modle"), "unknown model 'modle'"),
    (("kpi", "--model", "modle"), "unknown model 'modle'"),
    (("kpi", "--since", "last tuesday"), "--since 'last tuesday': expected a date"),
    (("audit", "model", "--json", "--md"), "give --json or --md, not both"),
])
def test_bad_questions_are_one_line_and_exit_2(history: Script, args: tuple[str, ...],
                                               words: str) -> None:
    proc = history.proj.run(*args)
    error_line(proc, 2, words)


def test_a_shallow_clone_says_so_and_a_project_without_registry_is_refused(
        history: Script, tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{history.proj.path}",
                    str(clone)], check=True)
    proc = Project(clone).run("lineage", "metrics.json", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "shallow clone" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["shallow"] is True and doc["revision"] == history.commits["C9"]
    audit = Project(clone).run("audit", "model", "--json")
    assert audit.returncode == 0 and "shallow clone" in audit.stderr
    assert json.loads(audit.stdout)["shallow"] is True
    proc = Project(clone).run("kpi", "--json")
    assert proc.returncode == 0 and "shallow clone" in proc.stderr
    assert json.loads(proc.stdout)["models"]["model"]["defect_rate"]["promotions"] == 1
    tags = Project(clone).git("tag").stdout.split()
    Project(clone).git("tag", "-d", *tags)
    error_line(Project(clone).run("kpi"), 2, "no registry yet")


def test_the_dashboard_draws_the_lineage_and_the_kpis(history: Script) -> None:
    from tests import browser
    from tests.test_ui import Dashboard, _visit, _watch

    c, server = history.commits, Dashboard(history.proj)
    try:
        server.wait("/kpi")
        with browser.page() as tab:
            errors = _watch(tab)
            assert _visit(tab, server.url("/lineage?target=model@v0.0.2"), errors) == 200
            assert not errors, errors
            ids = [n.get_attribute("data-id") for n in tab.locator("svg.graph g.node").all()]
            assert {"stage:prepare", "stage:train", "data:data/raw/train.csv",
                    "data:data/prepared", "data:models/model.pkl"} == set(ids)
            text = tab.locator("main").inner_text()
            assert c["C3"][:12] in text and "verify passed" in text
            assert "data.dvc, Alice <alice@example.com>, 2026-03-02 09:00:00Z" in text
            assert _visit(tab, server.url("/kpi"), errors) == 200 and not errors, errors
            rows = [r.locator("td").all_inner_texts()
                    for r in tab.locator("table").first.locator("tr").all()[1:]]
            assert rows[0] == ["overall", "5.0 h / 26.0 h (n=3)", "23.0 h / 23.0 h (n=1)",
                               "2.0 h / 2.0 h (n=1)", "1/3 = 33%"]
            assert tab.locator("svg.chart").count() == 3
            assert _visit(tab, server.url("/registry"), errors) == 200 and not errors, errors
            refused = tab.get_by_text("Promotions refused by a gate")
            assert refused.is_visible()
            assert "Carol <carol@example.com>" in tab.locator("main").inner_text()
        status, body = server.request("/lineage?target=modle@v0.0.1")
        assert status == 400 and "unknown model &#x27;modle&#x27;" in body
    finally:
        assert server.stop().returncode == 0


def test_a_verify_shared_by_another_clone_passes_the_gate_there(history: Script,
                                                                tmp_path: Path) -> None:
    clone = Project(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", str(history.proj.path), str(clone.path)], check=True)
    env = _env("Frank", at(4, 1))
    before = clone.run("model", "promote", "model", "v0.0.2", "--to", "prod", env=env)
    assert before.returncode == 1 and "FAIL  verify: no passed 'mlbuild verify'" in before.stdout
    fetched = clone.run("model", "fetch", env=env)  # merged with the clone's own refusal
    assert fetched.returncode == 0 and "shared findings merged" in fetched.stdout
    lineage = json.loads(clone.run("lineage", "model@v0.0.2", "--json").stdout)
    assert lineage["verify"]["who"] == "Bob <bob@example.com>"  # Bob's verify, on his clone
    after = clone.run("model", "promote", "model", "v0.0.2", "--to", "prod", env=env)
    # this clone has not pulled v0.0.2's data, so the contracts check still fails; the verify
    # check now passes on what Bob shared
    assert "pass  verify: verify passed on " in after.stdout
    assert "(Bob <bob@example.com>, shared)" in after.stdout
    refusals = [e for e in json.loads(clone.run("audit", "model", "--json").stdout)["events"]
                if e["kind"] == "gate"]
    assert [(e["version"], e["who"].split(" <")[0]) for e in refusals] == [
        ("v0.0.3", "Carol"), ("v0.0.2", "Frank"), ("v0.0.2", "Frank")]
