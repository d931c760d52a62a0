"""The model registry end to end on the built example: GTO-format tags that the real `gto`
and `dvc artifacts get` read, promotion gates, rollback, history, get from a fresh clone, and
the bad input that must leave no tag behind."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, Project, _env, copy_tree
from tests.errcheck import error_line

# one worker builds this module's shared fixture once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("registry")

GTO = str(Path(BIN) / "gto")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tags(proj: Project) -> list[str]:
    return proj.git("tag", "--list").stdout.split()


def _annotation(proj: Project, tag: str) -> dict[str, object]:
    message = proj.git("tag", "-l", "--format=%(contents)", tag).stdout
    line = next(x for x in message.splitlines() if x.startswith("mlbuild-registry: "))
    return dict(json.loads(line.split(": ", 1)[1]))


def _gto(proj: Project, *args: str) -> object:
    proc = subprocess.run([GTO, *args, "--json"], cwd=proj.path, env=_env(),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _lock_md5(proj: Project, path: str = "models/model.pkl") -> str:
    lock = proj.read("dvc.lock")
    tail = lock[lock.index(f"path: {path}"):]
    return tail.split("md5: ", 1)[1].split()[0]


def _published(built: Path, dest: Path) -> Project:
    """A copy of the built example with a DVC remote and a bare git origin outside it, its
    build committed, pushed to both."""
    copy_tree(built, dest / "example")
    proj = Project(dest / "example")
    origin = dest / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "-C", str(origin), "symbolic-ref", "HEAD", "refs/heads/main"],
                   check=True)
    proj.git("remote", "add", "origin", str(origin))
    assert proj.dvc("remote", "add", "-d", "-f", "shared", str(dest / "dvcremote")).returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built, with a shared DVC remote")
    _ok(proj.run("push"))
    proj.git("push", "-q", "origin", "HEAD:main")
    return proj


@pytest.fixture(scope="module")
def registered(built_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The published example with model v0.0.1 registered (shared by the bad-input tests,
    each of which puts back what it changes)."""
    proj = _published(built_example, tmp_path_factory.mktemp("registered"))
    _ok(proj.run("model", "register", "model"))
    return proj


def test_register_promote_fail_force_rollback_history_and_get(built_example: Path,
                                                              tmp_path: Path) -> None:
    proj = _published(built_example, tmp_path)
    best = _lock_md5(proj)
    assert "registered model v0.0.1 (tag model@v0.0.1)" in _ok(proj.run("model", "register",
                                                                         "model"))
    note = _annotation(proj, "model@v0.0.1")
    assert note["md5"] == best and note["path"] == "models/model.pkl"
    assert note["metrics"] == json.loads(proj.read("metrics.json")) and note["run"]

    staged = _ok(proj.run("model", "promote", "model", "v0.0.1", "--to", "staging"))
    assert "gate model@v0.0.1 -> staging: passed" in staged
    assert "pass  metric: accuracy >= 0.9: 0.972" in staged
    assert "pass  contracts: 3 contract(s) pass" in staged
    unverified = proj.run("model", "promote", "model", "v0.0.1", "--to", "prod")
    assert unverified.returncode == 1 and "FAIL  verify: no passed 'mlbuild verify'" in \
        unverified.stdout
    assert "refused by its gate (1 check(s) failed)" in unverified.stderr
    assert not any(t.startswith("model#prod") for t in _tags(proj))
    verified = _ok(proj.run("model", "promote", "model", "v0.0.1", "--to", "prod", "--verify"))
    assert "verify: ok" in verified and "pass  verify: verify" in verified

    # a worse model, built with a Hydra override, registered as built
    _ok(proj.run("run", "model.n_estimators=30"))
    proj.git("commit", "-qam", "fewer trees")
    _ok(proj.run("push"))
    worse = _lock_md5(proj)
    assert worse != best
    _ok(proj.run("model", "register", "model", "--bump", "minor"))
    refused = proj.run("model", "promote", "model", "v0.1.0", "--to", "prod")
    assert refused.returncode == 1, refused.stderr
    assert "FAIL  beat_current: accuracy beats v0.0.1 (higher is better" in refused.stdout
    tags_before = _tags(proj)
    assert len([t for t in tags_before if t.startswith("model#")]) == 2
    forced = _ok(proj.run("model", "promote", "model", "v0.1.0", "--to", "prod", "--force",
                          "--reason", "hotfix for the latency incident"))
    assert "replacing v0.0.1 (tag model#prod#3) (gate overridden" in forced
    note = _annotation(proj, "model#prod#3")
    assert note["forced"] is True and note["reason"] == "hotfix for the latency incident"
    assert note["gate"]["passed"] is False  # type: ignore[index]
    assert _gto(proj, "show")["model"]["stage"]["prod"] == "v0.1.0"  # type: ignore[index]

    back = _ok(proj.run("model", "rollback", "model", "--stage", "prod", "--reason",
                        "accuracy regression"))
    assert "model prod: v0.1.0 -> v0.0.1 (rollback, tag model#prod#4)" in back

    listed = json.loads(_ok(proj.run("model", "list", "--json")))
    assert listed == [{"model": "model", "latest": "v0.1.0",
                       "stages": {"prod": "v0.0.1", "staging": "v0.0.1"}}]
    shown = _gto(proj, "show")["model"]  # type: ignore[index]
    assert (shown["version"], shown["stage"]) == ("v0.1.0", listed[0]["stages"])
    history = json.loads(_ok(proj.run("model", "history", "model", "--json")))
    assert [(h["action"], h["version"], h["stage"], h["forced"]) for h in history] == [
        ("register", "v0.0.1", None, False), ("promote", "v0.0.1", "staging", False),
        ("promote", "v0.0.1", "prod", False), ("register", "v0.1.0", None, False),
        ("promote", "v0.1.0", "prod", True), ("rollback", "v0.0.1", "prod", False)]
    assert history[-1]["reason"] == "accuracy regression"
    theirs = _gto(proj, "history", "model")
    assert [(e["ref"], e["version"], e["stage"]) for e in reversed(theirs)] == [  # type: ignore[call-overload]
        (h["tag"], h["version"], h["stage"]) for h in history]
    text = _ok(proj.run("model", "history", "model"))
    assert "gate FAILED FORCED reason: hotfix for the latency incident" in text

    promotions = json.loads(_ok(proj.run("log", "--command", "model promote", "--json")))
    gates = [(r["args"][1], r["args"][2], r["status"], r["detail"]["registry"]["forced"])
             for r in reversed(promotions)]
    assert gates == [("v0.0.1", "staging", "ok", False), ("v0.0.1", "prod", "failed", False),
                     ("v0.0.1", "prod", "ok", False), ("v0.1.0", "prod", "failed", False),
                     ("v0.1.0", "prod", "ok", True)]

    from mlbuild.history.index import HistoryIndex

    index = HistoryIndex(proj.path)
    try:
        events = [(e[1], e[2], e[3], e[4], e[5]) for e in index.registry_events("model")]
    finally:
        index.close()
    assert events == [
        ("register", "v0.0.1", None, None, False), ("promote", "v0.0.1", "staging", True, False),
        ("promote", "v0.0.1", "prod", False, False), ("promote", "v0.0.1", "prod", True, False),
        ("register", "v0.1.0", None, None, False), ("promote", "v0.1.0", "prod", False, False),
        ("promote", "v0.1.0", "prod", False, True), ("rollback", "v0.0.1", "prod", None, False)]

    pushed = _ok(proj.run("model", "push", "origin"))
    assert "pushed 6 registry tag(s) to origin" in pushed
    clone = Project(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone.path)],
                   check=True)
    got = _ok(clone.run("model", "get", "model#prod", "-o", str(tmp_path / "prod.pkl")))
    assert "model v0.0.1" in got and "1 object(s) from the remote" in got
    assert _md5(tmp_path / "prod.pkl") == best
    _ok(clone.run("model", "get", "model@v0.1.0"))
    assert _md5(clone.path / "model.pkl") == worse
    again = clone.run("model", "get", "model@v0.1.0")  # never overwritten silently
    error_line(again, 2, "already exists")
    unchecked = clone.run("model", "promote", "model", "v0.1.0", "--to", "staging")
    assert unchecked.returncode == 1, unchecked.stderr  # its data was never pulled here
    assert "FAIL  contracts: data/raw/train.csv (stage prepare): not in the local cache" in \
        unchecked.stdout

    # the refused gates are findings the team shares (git notes): `model push` merges the
    # remote's into ours line by line and sends them
    _ok(clone.run("model", "push", "origin"))
    assert _refused(clone) == [("v0.0.1", "prod"), ("v0.1.0", "prod"), ("v0.1.0", "staging")]
    assert proj.run("model", "promote", "model", "v0.1.0", "--to", "prod").returncode == 1
    _ok(proj.run("model", "push", "origin"))
    assert _refused(proj) == [("v0.0.1", "prod"), ("v0.1.0", "prod"), ("v0.1.0", "staging"),
                              ("v0.1.0", "prod")]

    out = tmp_path / "dvc-get"
    out.mkdir()
    dvc = subprocess.run([sys.executable, "-m", "dvc", "artifacts", "get",
                          str(tmp_path / "origin.git"), "model", "--stage", "prod"],
                         cwd=out, env=_env(), capture_output=True, text=True, timeout=300)
    assert dvc.returncode == 0, dvc.stderr  # Studio is tried first and fails offline
    assert _md5(out / "model.pkl") == best


def _refused(proj: Project) -> list[tuple[str, str]]:
    """(version, stage) of every refused gate `mlbuild audit` knows, in order."""
    doc = json.loads(_ok(proj.run("audit", "model", "--json")))
    return [(e["version"], e["stage"]) for e in doc["events"] if e["kind"] == "gate"]


def test_two_promotions_at_once_do_not_both_win(registered: Project) -> None:
    procs = [registered.popen("model", "promote", "model", "v0.0.1", "--to", "dev")
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "v0.0.1 already holds 'dev'; nothing changed" in loser[2]
    assert [t for t in _tags(registered) if t.startswith("model#dev")] == [
        next(t for t in _tags(registered) if t.startswith("model#dev"))]


def _no_new_tags(proj: Project, before: list[str]) -> None:
    assert _tags(proj) == before


def test_register_refuses_a_dirty_tree_a_stale_lock_and_a_remote_without_the_model(
        registered: Project, tmp_path: Path) -> None:
    before = _tags(registered)
    (registered.path / "stages/train.py").write_text(registered.read("stages/train.py") + "#\n")
    error_line(registered.run("model", "register", "model"), 2, "uncommitted changes",
               "stages/train.py", "commit them first")
    registered.git("commit", "-qam", "edit the training code")
    try:
        error_line(registered.run("model", "register", "model"), 2,
                   "dvc.lock is stale for stage 'train'", "stages/train.py",
                   "run 'mlbuild run' and commit dvc.lock")
    finally:
        registered.git("reset", "-q", "--hard", "HEAD~1")
    assert registered.dvc("remote", "add", "-d", "-f", "empty",
                          str(tmp_path / "empty")).returncode == 0
    registered.git("commit", "-qam", "a remote that lacks the model")
    try:
        error_line(registered.run("model", "register", "model", "--version", "v2.0.0"), 1,
                   "the DVC remote lacks models/model.pkl", "run 'mlbuild push' first")
        error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "nope"), 2,
                   "unknown stage 'nope'", "configured: dev, staging, prod")
    finally:
        registered.git("reset", "-q", "--hard", "HEAD~1")
    _no_new_tags(registered, before)


def test_names_versions_and_stages_that_do_not_exist(registered: Project) -> None:
    before = _tags(registered)
    error_line(registered.run("model", "register", "modle"), 2, "unknown model 'modle'",
               "did you mean 'model'?")
    error_line(registered.run("model", "promote", "modle", "v0.0.1", "--to", "dev"), 2,
               "unknown model 'modle'")
    error_line(registered.run("model", "promote", "model", "v0.0.9", "--to", "dev"), 2,
               "has no version v0.0.9", "registered: v0.0.1")
    error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "prd"), 2,
               "unknown stage 'prd'", "did you mean 'prod'?")
    error_line(registered.run("model", "register", "model", "--version", "0.0.1"), 2,
               "version v0.0.1 already exists")
    error_line(registered.run("model", "register", "model", "--version", "v1.x"), 2,
               "invalid version 'v1.x'")
    error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "prod",
                              "--force"), 2, "--force needs --reason")
    error_line(registered.run("model", "rollback", "model", "--stage", "prod", "--reason",
                              "x"), 2, "no version holds 'prod'")
    error_line(registered.run("model", "get", "model@v3.0.0"), 2, "has no version v3.0.0")
    error_line(registered.run("model", "get", "model#staging"), 2,
               "no version of model 'model' holds stage 'staging'")
    error_line(registered.run("model", "history", "modle"), 2, "unknown model 'modle'")
    _no_new_tags(registered, before)


def test_the_registry_needs_git(tmp_path: Path) -> None:
    proj = Project(tmp_path)
    assert proj.dvc("init", "--no-scm", "-q").returncode == 0
    error_line(proj.run("model", "list"), 2, "not in a git repository", "git init")


def test_a_gate_naming_a_metric_no_stage_writes_is_bad_input(registered: Project) -> None:
    before = _tags(registered)
    config = registered.read("mlbuild.yaml")
    registered.write("mlbuild.yaml", config.replace('accuracy: ">= 0.9"', 'acuracy: ">= 0.9"'))
    try:
        error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "staging"),
                   2, "registry.models.model.staging.metrics.acuracy",
                   "no stage writes a metric 'acuracy'", "did you mean 'accuracy'?")
        registered.write("mlbuild.yaml", config.replace("    model:\n", "    modle:\n"))
        error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "staging"),
                   2, "registry.models.modle: no artifact named 'modle' is declared",
                   "did you mean 'model'?")
        registered.write("mlbuild.yaml", config.replace("      staging:", "      stag ing:"))
        error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "staging"),
                   2, "registry.models.model.stag ing: invalid stage name")
        registered.write("mlbuild.yaml", config.replace('">= 0.9"', '"about 0.9"'))
        error_line(registered.run("model", "promote", "model", "v0.0.1", "--to", "staging"),
                   2, "expected 'OP NUMBER'")
        registered.write("mlbuild.yaml", config.replace('">= 0.9"', '">= 0.99"'))
        high = registered.run("model", "promote", "model", "v0.0.1", "--to", "staging")
        assert high.returncode == 1, high.stderr
        assert "FAIL  metric: accuracy >= 0.99: 0.972" in high.stdout
        report = registered.run("model", "promote", "model", "v0.0.1", "--to", "staging",
                                "--json")
        assert report.returncode == 1 and "refused by its gate" in report.stderr
        outcome = json.loads(report.stdout)
        assert outcome["tag"] is None and outcome["gate"]["passed"] is False
        assert outcome["gate"]["checks"][0] == {"check": "metric", "passed": False,
                                                "detail": "accuracy >= 0.99: 0.972222"}
    finally:
        registered.write("mlbuild.yaml", config)
    _no_new_tags(registered, before)


def test_an_artifact_must_name_an_output_of_its_stage(example: Project) -> None:
    text = example.read("stages/train.yaml")
    example.write("stages/train.yaml", text.replace("path: models/model.pkl",
                                                    "path: models/other.pkl"))
    error_line(example.run("compile"), 2, "stages/train.yaml.artifacts.model.path",
               "'models/other.pkl' is not an output of this stage")
    example.write("stages/train.yaml", text)
    _ok(example.run("compile"))
    assert "artifacts:\n  model:\n    path: models/model.pkl\n    type: model" in example.read(
        "dvc.yaml")


@pytest.mark.parametrize(("margin", "new", "old", "passed"), [
    ({}, 0.9, 0.8, True), ({}, 0.8, 0.8, False),  # must beat, not equal
    ({"min_delta": 0.05}, 0.84, 0.8, False), ({"min_delta": 0.05}, 0.86, 0.8, True),
    ({"min_delta": 0.1, "relative": True}, 0.87, 0.8, False),  # needs 0.08
    ({"min_delta": 0.1, "relative": True}, 0.89, 0.8, True),
    ({"greater_is_better": False}, 0.7, 0.8, True), ({"greater_is_better": False}, 0.9, 0.8,
                                                     False)])
def test_beat_current_margins(margin: dict[str, object], new: float, old: float,
                              passed: bool) -> None:
    from mlbuild.registry.config import _margin
    from mlbuild.registry.gate import _beats

    assert _beats(_margin("loss", margin, "here"), new, old)[0] is passed


def test_a_schema_1_history_gains_the_registry_events(tmp_path: Path) -> None:
    """The migration to schema 2 indexes the registry records an older index already holds."""
    import sqlite3

    from mlbuild.history.index import HistoryIndex
    from mlbuild.history.journal import INDEX, MIGRATIONS, history_dir

    folder = history_dir(tmp_path)
    folder.mkdir(parents=True)
    detail = {"registry": {"model": "churn", "action": "promote", "version": "v1.0.0",
                           "stage": "prod", "tag": "churn#prod#1", "gate": {"passed": False},
                           "forced": True, "reason": "hotfix"}}
    with sqlite3.connect(folder / INDEX) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   ("r1", "model promote", "[]", "abc", 0, "u", "h", 1.0, 2.0, "ok", None,
                    json.dumps(detail)))
        db.execute("PRAGMA user_version = 1")
    index = HistoryIndex(tmp_path)
    try:
        assert index.db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert index.registry_events("churn") == [("r1", "promote", "v1.0.0", "prod", False,
                                                   True)]
    finally:
        index.close()
