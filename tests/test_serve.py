"""`mlbuild serve` and `mlbuild predict` on the built example: a real server process on a free
localhost port (one per module, shared), real HTTP requests in every form both protocols
accept, every class of bad input, a port already taken, and batch scoring."""

from __future__ import annotations

import http.client
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.errcheck import error_line
from tests.servekit import Server, raw_rows, registered_example

# one worker builds this module's shared fixture once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("serve")

N_FEATURES = 64
PIXELS = [f"pixel{i}" for i in range(N_FEATURES)]
INFER = "/v2/models/model/infer"


@pytest.fixture(scope="module")
def served(built_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The registered example served by name, its artifact first removed from the local cache
    (so the server fetches it from the DVC remote), with a small body limit."""
    proj = registered_example(built_example, tmp_path_factory.mktemp("serve") / "example")
    lock = proj.read("dvc.lock")
    md5 = lock[lock.index("path: models/model.pkl"):].split("md5: ", 1)[1].split()[0]
    (proj.path / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).unlink()
    server = Server(proj, "model", "--max-body-mb", "0.1")
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def _expected(proj: Project, rows: list[list[int]]) -> list[int]:
    """The pickled model's own predictions on these rows."""
    import pandas as pd

    model = pickle.loads((proj.path / "models/model.pkl").read_bytes())
    return [int(v) for v in model.predict(pd.DataFrame(rows, columns=PIXELS))]


def test_health_metadata_and_mlflow_endpoints(served: Server) -> None:
    assert served.request("/v2") == (200, {"name": "mlbuild", "version": "0.1.0",
                                           "extensions": []})
    assert served.request("/v2/health/live") == (200, {"live": True})
    assert served.request("/v2/health/ready") == (200, {"ready": True})
    for path in ("/v2/models/model", "/v2/models/model/versions/v0.0.1"):
        status, meta = served.request(path)
        assert status == 200 and meta["name"] == "model" and meta["versions"] == ["v0.0.1"]
        assert meta["inputs"] == [{"name": p, "datatype": "INT64", "shape": [-1]}
                                  for p in PIXELS]
        assert meta["parameters"]["tensor_columns"] == PIXELS
    assert served.request("/v2/models/model/ready") == (200, {"name": "model", "ready": True})
    status, doc = served.request("/v2/models/model/versions/v9.9.9/ready")
    assert status == 404 and "no version 'v9.9.9'" in doc["error"]
    status, doc = served.request("/v2/models/modle")
    assert status == 404 and doc["error"].startswith("unknown model 'modle'")
    assert served.request("/ping") == (200, "\n")
    assert served.request("/health") == (200, "\n")
    assert served.request("/version") == (200, "0.1.0")
    assert served.request("/nope") == (404, {"error": "no such endpoint: GET /nope"})
    assert served.request("/invocations")[0] == 405


def test_every_request_form_gives_the_models_own_answer(served: Server) -> None:
    columns, rows = raw_rows(served.proj, 5)
    assert columns == PIXELS
    expected = _expected(served.proj, rows)
    flat = [v for row in rows for v in row]
    oip = {
        "INT64 tensor, flat": {"id": "req-1", "inputs": [
            {"name": "x", "shape": [5, 64], "datatype": "INT64", "data": flat}]},
        "FP64 tensor, nested": {"id": "req-1", "inputs": [
            {"name": "x", "shape": [5, 64], "datatype": "FP64",
             "data": [[float(v) for v in row] for row in rows]}]},
        "pd columns": {"id": "req-1", "parameters": {"content_type": "pd"}, "inputs": [
            {"name": c, "shape": [5], "datatype": "INT64", "data": [r[i] for r in rows]}
            for i, c in enumerate(columns)]},
    }
    for form, doc in oip.items():
        for path in (INFER, "/v2/models/model/versions/v0.0.1/infer"):
            status, answer = served.post(path, doc)
            assert status == 200, (form, answer)
            assert answer == {"model_name": "model", "model_version": "v0.0.1", "id": "req-1",
                              "outputs": [{"name": "predict", "shape": [5],
                                           "datatype": "INT64", "data": expected}]}, form
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    mlflow = {
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": rows}},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": rows},
        "inputs as columns": {"inputs": {c: [r[i] for r in rows]
                                         for i, c in enumerate(columns)}},
    }
    want = (200, {"predictions": expected, "model_version": "v0.0.1"})
    for form, doc in mlflow.items():
        assert served.post("/invocations", doc) == want, form
    text = ",".join(columns) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    assert served.request("/invocations", text.encode(), "text/csv") == want
    status, metrics = served.request("/metrics")
    assert status == 200
    assert ('mlbuild_serve_requests_total{endpoint="infer",model_version="v0.0.1",'
            'role="answered"}') in metrics
    assert 'mlbuild_serve_model_version_info{model="model",model_version="v0.0.1",' \
           'role="answered"} 1.0' in metrics
    assert "mlbuild_serve_request_latency_seconds_bucket" in metrics


def _record(columns: list[str], row: list[int], **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = dict(zip(columns, row, strict=True))
    for key, value in changes.items():
        if value is ...:
            del record[key]
        else:
            record[key] = value
    return record


def test_each_bad_request_is_a_4xx_naming_what_is_wrong(served: Server) -> None:
    columns, rows = raw_rows(served.proj, 2)

    def records(**changes: Any) -> bytes:
        return json.dumps({"dataframe_records": [_record(columns, rows[0]),
                                                 _record(columns, rows[1], **changes)]}).encode()

    def tensor(datatype: str, data: list[Any], shape: list[int]) -> bytes:
        return json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": datatype,
                                       "data": data}]}).encode()

    cases: list[tuple[str, bytes, str, int, tuple[str, ...]]] = [
        ("/invocations", records(pixel64=0), "application/json", 400,
         ("unknown column 'pixel64'", "(strict)")),
        ("/invocations", json.dumps({"dataframe_split": {"columns": columns[:3] + columns[4:],
                                                         "data": [rows[0][:3] + rows[0][4:]]}}
                                    ).encode(), "application/json", 400,
         ("column 'pixel3'", "missing (required)")),
        ("/invocations", records(pixel2="abc"), "application/json", 400,
         ("column 'pixel2'", "'abc' at row 1", "(dtype")),
        ("/invocations", records(pixel5=17), "application/json", 400,
         ("column 'pixel5'", "17 at row 1", "(in_range)")),
        ("/invocations", records(pixel6=-1), "application/json", 400,
         ("column 'pixel6'", "(in_range)")),
        ("/invocations", records(pixel7=None), "application/json", 400,
         ("column 'pixel7'", "null", "(not_nullable)")),
        ("/invocations", records(pixel8=...), "application/json", 400,
         ("column 'pixel8'", "null", "(not_nullable)")),
        (INFER, tensor("FP64", [3.5] + [0.0] * 63, [1, 64]), "application/json", 400,
         ("column 'pixel0'", "3.5", "not an integer (dtype)")),
        (INFER, tensor("INT64", [0] * 63, [1, 63]), "application/json", 400,
         ("63 columns", "64 features")),
        (INFER, tensor("INT64", [0.5] * 64, [1, 64]), "application/json", 400,
         ("not all INT64",)),
        (INFER, tensor("INT64", [0] * 64, [2, 64]), "application/json", 400,
         ("needs 128 values",)),
        (INFER, b'{"inputs": []}', "application/json", 400, ("non-empty 'inputs'",)),
        ("/invocations", b"{not json", "application/json", 400, ("not valid JSON",)),
        ("/invocations", b'{"rows": []}', "application/json", 400, ("dataframe_split",)),
        ("/invocations", b"\xff\xfe\x00\x01", "text/csv", 400, ("not valid CSV",)),
        ("/invocations", b"a,b\n1,2\n", "text/csv", 400, ("unknown column 'a'",)),
        ("/invocations", b"pixel0\n1\n", "text/plain", 415, ("text/plain",)),
        ("/invocations", b"[" + b"0," * 60000 + b"0]", "application/json", 413,
         ("the limit is 104857",)),
        ("/v2/models/other/infer", tensor("INT64", [0] * 64, [1, 64]), "application/json",
         404, ("unknown model 'other'",)),
    ]
    for path, body, ctype, status, needles in cases:
        got, doc = served.request(path, body, ctype)
        assert got == status, (needles, doc)
        assert set(doc) == {"error"}, doc
        for needle in needles:
            assert needle in doc["error"], (needle, doc)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:  # no Content-Length: the body is counted as it streams in
        conn.request("POST", "/invocations", body=iter([b"[" + b"0," * 40000] * 2),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and "larger than the limit" in json.loads(resp.read())["error"]
    finally:
        conn.close()
    assert served.proc.poll() is None  # nothing above crashed it
    metrics = served.request("/metrics")[1]
    for rule in ("strict", "required", "dtype", "in_range", "not_nullable"):
        assert f'rule="{rule}",status="400"' in metrics, rule
    assert 'endpoint="invocations",rule="request",status="413"' in metrics


def test_a_port_in_use_is_one_line_and_exit_2(served: Server) -> None:
    proc = served.proj.run("serve", "model", "--port", str(served.port))
    error_line(proc, 2, f"port {served.port} on 127.0.0.1 is already in use", "--port")


def test_predict_scores_a_file_with_the_same_contract(served: Server, tmp_path: Path) -> None:
    proj = served.proj
    columns, rows = raw_rows(proj, 10_000)
    expected = _expected(proj, rows)
    out = tmp_path / "scored.parquet"
    proc = proj.run("predict", "model@v0.0.1", "--input", "data/raw/test.csv", "--output",
                    str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"model v0.0.1: scored {len(rows)} row(s)" in proc.stdout
    import pandas as pd

    scored = pd.read_parquet(out)
    assert list(scored.columns) == [*columns, "prediction"]
    assert scored["prediction"].tolist() == expected
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(columns) + "\n" + ",".join(["0"] * 40 + ["99"] + ["0"] * 23) + "\n")
    proc = proj.run("predict", "model", "--input", str(bad), "--output", str(tmp_path / "x.csv"))
    error_line(proc, 2, str(bad), "column 'pixel40'", "99 at row 0", "(in_range)")
    assert not (tmp_path / "x.csv").exists()
    proc = proj.run("predict", "model", "--input", str(bad), "--output", "x.xlsx")
    error_line(proc, 2, "x.xlsx", "unknown output format '.xlsx'")


def _fuzz_strategies() -> Any:
    """Request bodies, from plain bytes to nearly valid documents of each form."""
    from hypothesis import strategies as st

    from mlbuild.serve.protocol import TENSOR_TYPES

    leaf = (st.none() | st.booleans() | st.integers(-3, 20) | st.integers(-2**70, 2**70)
            | st.floats() | st.text(max_size=4))
    anything = st.recursive(leaf, lambda c: st.lists(c, max_size=4)
                            | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=16)
    name = st.sampled_from(PIXELS) | st.text(max_size=6)
    row = st.lists(st.integers(0, 16), min_size=64, max_size=64) | st.lists(leaf, max_size=66)
    tensor = st.fixed_dictionaries({
        "name": name, "shape": st.lists(st.integers(-1, 130), max_size=3) | anything,
        "datatype": st.sampled_from([*TENSOR_TYPES, "FP99"]),
        "data": st.lists(row, max_size=2) | row | anything})
    oip = st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=3) | anything}, optional={
        "id": anything, "parameters": st.fixed_dictionaries(
            {"content_type": st.sampled_from(["pd", "np", 3])})})
    records = st.lists(st.dictionaries(name, st.integers(-1, 17) | leaf, max_size=66),
                       max_size=3)
    mlflow = st.one_of(
        st.builds(lambda c, d: {"dataframe_split": {"columns": c, "data": d}},
                  st.lists(name, max_size=66) | anything, st.lists(row, max_size=3) | anything),
        st.builds(lambda r: {"dataframe_records": r}, records | anything),
        st.builds(lambda r: {"instances": r}, st.lists(row, max_size=3) | anything),
        st.builds(lambda r: {"inputs": r},
                  st.dictionaries(name, st.lists(leaf, max_size=3), max_size=66) | anything))
    as_json = (oip | mlflow | anything).map(lambda d: json.dumps(d).encode())
    csv_text = st.lists(st.lists(st.integers(-1, 17) | st.text(max_size=3), max_size=66),
                        max_size=4).map(lambda rows: "\n".join(
                            [",".join(PIXELS)] + [",".join(map(str, r)) for r in rows]).encode())
    path = st.sampled_from([INFER, "/invocations", "/v2/models/model/versions/v0.0.1/infer"])
    ctype = st.sampled_from(["application/json", "text/csv", "text/plain", ""])
    return st.tuples(path, as_json | csv_text | st.binary(max_size=300), ctype)


def test_fuzzed_requests_never_get_a_server_error(served: Server) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_fuzz_strategies())
    def check(request: tuple[str, bytes, str]) -> None:
        path, body, ctype = request
        status, doc = served.request(path, body, ctype or "application/octet-stream")
        assert status in (200, 400, 413, 415), (status, doc, body[:300])
        if status != 200:
            assert isinstance(doc, dict) and set(doc) == {"error"} and doc["error"], doc

    check()
    assert served.request("/v2/health/ready") == (200, {"ready": True})


def test_workers_share_the_port_and_each_logs_its_own_answers(served: Server,
                                                              tmp_path: Path) -> None:
    server = Server(served.proj, "model", "--workers", "2", "--log-dir", str(tmp_path))
    try:
        server.wait()  # a worker accepts connections once its own copy is loaded
        columns, rows = raw_rows(served.proj, 20)
        for i, row in enumerate(rows):
            status, answer = server.post("/invocations", {"dataframe_split": {
                "columns": columns, "data": [row]}}, {"X-Request-Id": f"w{i}"})
            assert status == 200, answer
    finally:
        stopped = server.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped (SIGTERM): 20 prediction(s) logged" in stopped.stdout
    logged = [json.loads(line)["request_id"] for f in tmp_path.glob("worker-*/predictions.jsonl")
              for line in f.read_text().splitlines()]
    assert sorted(logged) == sorted(f"w{i}" for i in range(20))
