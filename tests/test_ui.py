"""`mlbuild ui` end to end: a real dashboard process over the built example with a sweep, a
registered and promoted model (and a promotion its gate refused) and a drift report; real HTTP
requests and a real headless browser on every page, each checked against what the matching
CLI command prints; SIGTERM ends it with exit 0. Bad input: one line, exit 2."""

from __future__ import annotations

import csv
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlbuild.ui.svg import Axis, Edge, Node, Series, chart, graph, layers
from tests import browser
from tests.conftest import Project
from tests.errcheck import error_line
from tests.servekit import HOST, Server, free_port, registered_example

# one worker builds this module's shared fixture once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("ui")

PAGES = ("/", "/runs", "/experiments", "/registry", "/drift")


class Dashboard(Server):
    """A `mlbuild ui` process on a free port (requests as servekit's Server makes them)."""

    def __init__(self, proj: Project) -> None:
        self.port = free_port()
        self.proj = proj
        self.proc = proj.start("ui", "--port", str(self.port))


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return str(proc.stdout)


def _shifted_rows(proj: Project, dest: Path, rows: int = 300) -> None:
    """Raw test rows as a brighter scanner would send them: most features drift."""
    with open(proj.path / "data/raw/test.csv", newline="") as src, \
            open(dest, "w", newline="") as out:
        reader, writer = csv.reader(src), csv.writer(out)
        writer.writerow(next(reader))
        for _, row in zip(range(rows), reader, strict=False):
            writer.writerow([min(16, int(v) + 5) if int(v) else 0 for v in row])


@pytest.fixture(scope="module")
def history(built_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The built example, committed and registered (v0.0.1), after a two-variant sweep, a
    promotion to staging, a promotion to prod its gate refused (no verify recorded) and a
    monitoring check of shifted data with an HTML report."""
    proj = registered_example(built_example, tmp_path_factory.mktemp("ui") / "example")
    _ok(proj.run("exp", "run", "model.n_estimators=20,40"))
    _ok(proj.run("model", "promote", "model", "v0.0.1", "--to", "staging"))
    refused = proj.run("model", "promote", "model", "v0.0.1", "--to", "prod")
    assert refused.returncode == 1, refused.stderr
    _shifted_rows(proj, proj.path / "shifted.csv")
    _ok(proj.run("monitor", "model", "--current", "shifted.csv", "--html", "drift.html"))
    return proj


@pytest.fixture(scope="module")
def dashboard(history: Project) -> Iterator[Dashboard]:
    """`mlbuild ui` running on *history* (stopped by the test that checks its end)."""
    server = Dashboard(history)
    server.wait("/")
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.communicate()


def _watch(tab: Any) -> list[str]:
    """The console errors and uncaught exceptions of *tab*, as they come."""
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _visit(tab: Any, url: str, errors: list[str]) -> int:
    """Open *url* (forgetting earlier errors); its HTTP status."""
    errors.clear()
    response = tab.goto(url)
    tab.wait_for_load_state("load")
    return int(response.status)


def _check_pipeline(tab: Any, history: Project, server: Dashboard, errors: list[str]
                    ) -> None:
    """The graph's nodes and edges are the DAG; each stage's status is `status`'s verdict,
    computed afresh: an edit of evaluate's code shows up on the next load."""
    dag = json.loads(_ok(history.run("dag", "--json")))["stages"]
    assert [n.get_attribute("data-id") for n in tab.locator("svg.graph g.node").all()] == [
        s["stage"] for s in dag] == ["prepare", "train", "evaluate"]
    assert tab.locator("svg.graph path.edge").count() == sum(len(s["upstream"]) for s in dag)
    assert tab.locator("svg.graph g.node text").all_text_contents().count("up to date") == 3
    stages = tab.locator("table").first.inner_text()
    for name in ("prepare", "train", "evaluate"):  # dvc.yaml's commands
        assert f"python -m stages.{name}" in stages
    code = history.path / "stages/evaluate.py"
    before = code.read_text()
    code.write_text(before + "# an edit\n")
    try:
        assert _visit(tab, server.url("/"), errors) == 200 and not errors, errors
        verdict = {s["stage"]: s for s in json.loads(history.run("status", "--json").stdout)
                   ["stages"]}["evaluate"]
        node = tab.locator('svg.graph g.node[data-id="evaluate"]').text_content()
        assert verdict["stale"] and f"stale: {', '.join(verdict['changed'])}" in node
        assert "stages/evaluate.py" in tab.locator("table").first.inner_text()
        assert tab.get_by_text("1 of 3 stages stale.").is_visible()
    finally:
        code.write_text(before)


def _check_runs(tab: Any, history: Project) -> None:
    logged = json.loads(_ok(history.run("log", "-n", "50", "--json")))
    text = tab.locator("table").inner_text()
    for run in logged:
        assert run["id"][:12] in text and run["command"] in text
    assert {"run", "exp run", "model promote", "monitor"} <= {r["command"] for r in logged}
    assert tab.locator("svg.chart circle.point").count() == len(logged)


def _check_experiments(tab: Any, history: Project) -> None:
    rows = json.loads(_ok(history.run("exp", "show", "--json")))
    assert len(rows) == 3  # the baseline and the two variants
    cells = [r.locator("td").all_inner_texts()
             for r in tab.locator("table.experiments tr").all()[1:]]
    for row, shown in zip(rows, cells, strict=True):
        assert row["name"] in shown[0] and f"{row['metrics']['accuracy']:.5g}" in shown
        assert str(row["params"]["model.n_estimators"]) in shown
    chart = tab.locator("svg.chart")
    assert chart.count() == 1 and "model.n_estimators" in chart.text_content()
    assert chart.locator("circle.point").count() == 3
    tips = chart.locator("circle.point title").all_text_contents()
    assert any(f"accuracy={rows[0]['metrics']['accuracy']:.5g}" in t for t in tips)


def _check_registry(tab: Any, history: Project) -> None:
    listed = json.loads(_ok(history.run("model", "list", "--json")))
    assert listed == [{"model": "model", "latest": "v0.0.1", "stages": {"staging": "v0.0.1"}}]
    text = tab.locator("main").inner_text()
    assert "latest v0.0.1" in text and "staging v0.0.1" in text
    events = json.loads(_ok(history.run("model", "history", "model", "--json")))
    for event in events:
        assert event["tag"] in text
    gates = tab.locator("details.gate")
    assert gates.count() == 2  # the staging promotion, passed; the prod one, refused
    for n in range(2):
        gates.nth(n).locator("summary").click()
    passed, refused = gates.nth(0).inner_text(), gates.nth(1).inner_text()
    assert "passed" in passed and "accuracy >= 0.9" in passed
    assert "FAILED" in refused and "no passed 'mlbuild verify'" in refused


def _check_drift(tab: Any, history: Project, server: Dashboard) -> None:
    (check,) = json.loads(_ok(history.run("log", "--command", "monitor", "--json")))
    doc = check["detail"]["monitor"]
    text = tab.locator("main").inner_text()
    drifted = doc["drifted_columns"]
    assert f"{len(drifted)} of 64" in text and "DRIFT" in text and "v0.0.1" in text
    assert len(drifted) >= 32
    table = tab.locator("table").nth(1)  # the latest check's drifted features
    assert table.locator("tr").count() == len(drifted) + 1
    assert sorted(table.locator("tr td:first-child").all_inner_texts()) == sorted(drifted)
    tab.get_by_role("link", name="report").click()  # the page `monitor --html` wrote
    tab.wait_for_load_state("load")
    assert tab.url == server.url(f"/drift/{check['id']}.html")
    drawn = tab.evaluate("Array.from(document.images)"
                         ".filter(i => i.complete && i.naturalWidth > 0).length")
    assert drawn == len(drifted)


def test_every_page_shows_the_example_in_a_browser_and_sigterm_ends_it(
        history: Project, dashboard: Dashboard) -> None:
    def kept() -> tuple[bytes, str, str]:
        return ((history.path / "dvc.lock").read_bytes(), history.git("tag").stdout,
                history.git("status", "--porcelain").stdout)

    before = kept()
    checks = {"/runs": _check_runs, "/experiments": _check_experiments,
              "/registry": _check_registry}
    with browser.page() as tab:
        errors = _watch(tab)
        for path in PAGES:
            assert _visit(tab, dashboard.url(path), errors) == 200 and not errors, (path, errors)
            assert tab.locator("nav a.active").get_attribute("href") == path
            if path == "/":
                _check_pipeline(tab, history, dashboard, errors)
            elif path == "/drift":
                _check_drift(tab, history, dashboard)
            else:
                checks[path](tab, history)
            assert not errors, (path, errors)
        tab.goto(dashboard.url("/"))
        tab.get_by_role("link", name="Registry").click()  # the navigation bar links the pages
        assert tab.url == dashboard.url("/registry")
    # bad queries and unknown pages: a page that says so, with the HTTP status
    status, body = dashboard.request("/experiments?metric=acuracy")
    assert status == 400 and "did you mean" in body and "accuracy" in body
    assert dashboard.request("/nowhere")[0] == 404
    assert dashboard.request("/drift/nope.html")[0] == 404
    # read-only: nothing the project keeps changed
    assert kept() == before
    stopped = dashboard.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert f"http://{HOST}:{dashboard.port}/" in stopped.stdout
    assert "stopped (SIGTERM)" in stopped.stdout and "Traceback" not in stopped.stderr


def test_a_project_with_nothing_yet_gets_pages_that_say_so(project: Project) -> None:
    server = Dashboard(project)
    try:
        server.wait("/runs")
        says = {"/": "dvc.yaml: not found", "/runs": "No runs recorded yet",
                "/experiments": "at least one commit", "/registry": "No model declared",
                "/drift": "No monitoring check recorded yet",
                "/lineage": "No model version registered yet", "/kpi": "no commits yet"}
        for path, words in says.items():
            status, body = server.request(path)
            assert status == 200 and words in body, (path, body)
    finally:
        assert server.stop().returncode == 0


def test_bad_input_is_one_line_and_exit_2(project: Project, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        error_line(project.run("ui", "--port", str(port)), 2, f"port {port}",
                   "already in use", "--port")
    error_line(project.run("ui", "--port", "70000"), 2, "--port 70000")
    error_line(project.run("ui", "--host", "192.0.2.1", "--port", str(free_port())), 2,
               "cannot listen on 192.0.2.1")  # an address of no interface here (TEST-NET-1)
    nowhere = tmp_path / "not-a-project"
    nowhere.mkdir()
    error_line(Project(nowhere).run("ui"), 2, "no mlbuild/DVC project found")


def test_the_graph_layout_puts_each_stage_after_its_inputs() -> None:
    nodes = [Node(n, n) for n in ("report", "evaluate", "train", "prepare", "features")]
    edges = [Edge("prepare", "train"), Edge("features", "train"), Edge("train", "evaluate"),
             Edge("prepare", "evaluate"), Edge("evaluate", "report")]
    assert layers(nodes, edges) == [["prepare", "features"], ["train"], ["evaluate"],
                                    ["report"]]
    drawn = graph(nodes, edges)
    assert re.findall(r'data-id="(\w+)"', drawn) == ["prepare", "features", "train",
                                                     "evaluate", "report"]
    assert drawn.count('class="edge"') == len(edges)


def test_text_in_the_svg_is_escaped_and_every_series_is_drawn() -> None:
    hostile = "<script>alert(1)</script>&"
    drawn = graph([Node("a", hostile, tooltip=hostile), Node("b", "b")], [Edge("a", "b")])
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn
    series = [Series(f"model {n} <b>", ((1.0, n), (2.0, n + 1.0))) for n in range(6)]
    plotted = chart(series, Axis("when", "time"), Axis("days <"), "cycle time")
    assert "<b>" not in plotted and "days &lt;" in plotted
    assert plotted.count('class="series"') == 6 and plotted.count("<circle") == 12
    assert plotted.count("<rect") == 6  # a legend entry per series, wrapped under the chart
