"""The server's compiled prediction path (LightGBM trees compiled by lleaves in a child process,
cached in the user's cache directory) gives exactly the model's own answers, or is not
used: the example's Pipeline and LightGBM binary, multiclass and regression models answer
through it what model.predict answers; a linear-tree model, whose leaves lleaves does not
compile, is caught by the first request's proof; without lleaves the server answers through
LightGBM as before. Real `mlbuild serve` processes on free localhost ports, real HTTP, SIGTERM
at the end; which path answers is read from /metrics."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import platformdirs
import pytest
from ruamel.yaml import YAML

from tests.conftest import Project, _env
from tests.servekit import Server

READY_TIMEOUT = 600.0  # the model compiles before the server is ready: 10-60 s when loaded
PATH_LINE = re.compile(r"mlbuild_serve_predict_path_info\{([^}]*)\} 1\.0")
LABEL = re.compile(r'(\w+)="([^"]*)"')
FEATURES = [f"f{i}" for i in range(5)]
TRAIN = '''
import pickle, sys
import lightgbm
import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
frame = pd.DataFrame(rng.normal(size=(400, 5)), columns=[f"f{i}" for i in range(5)])
target = frame["f0"] + frame["f1"] * 2 - frame["f2"] + rng.normal(scale=0.1, size=400)
for kind in sys.argv[1:]:
    if kind == "binary":
        model = lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)
        model.fit(frame, np.where(target > 0, "yes", "no"))
    elif kind == "multiclass":
        model = lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)
        model.fit(frame, np.digitize(target, [-1.0, 0.0, 1.0]))
    else:
        model = lightgbm.LGBMRegressor(n_estimators=30, verbose=-1,
                                       linear_tree=kind == "linear")
        model.fit(frame, target)
    pickle.dump(model, open(f"models/{kind}.pkl", "wb"))
'''
SCHEMA = '''
import pandera.pandas as pa


def features():
    return pa.DataFrameSchema({f"f{i}": pa.Column(float) for i in range(5)}, strict=True)
'''


def _paths(server: Server) -> tuple[str, str]:
    """(path, compile state) of the version serving, from /metrics."""
    status, text = server.request("/metrics")
    assert status == 200
    found = PATH_LINE.search(text)
    assert found, text
    labels = dict(LABEL.findall(found.group(1)))
    return labels["path"], labels["compile"]


def _settled(server: Server, body: dict[str, Any]) -> tuple[str, str]:
    """Wait until the server is ready (the trees compiled), send the first request (which
    proves or refuses the compiled path); (path, compile state) then."""
    server.wait(timeout=READY_TIMEOUT)
    assert _paths(server)[1] != "in use"  # nothing is used before a request proved it
    assert server.post("/invocations", body)[0] == 200
    return _paths(server)


def _predict(server: Server, frame: pd.DataFrame) -> list[Any]:
    status, doc = server.post("/invocations", {"dataframe_split": {
        "columns": list(frame.columns), "data": frame.to_numpy().tolist()}})
    assert status == 200, doc
    return list(doc["predictions"])


def _answers_like_the_model(server: Server, model: Any, frame: pd.DataFrame) -> None:
    """Every row, one at a time for the first 20 and 100 at a time for all, answered as
    model.predict answers them (labels or values, exactly: JSON floats round-trip)."""
    expected = model.predict(frame).tolist()
    assert [_predict(server, frame.iloc[[i]])[0] for i in range(20)] == expected[:20]
    batched = [p for start in range(0, len(frame), 100)
               for p in _predict(server, frame.iloc[start:start + 100])]
    assert batched == expected


def _stopped(server: Server) -> None:
    proc = server.stop()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def _example_model(proj: Project) -> Any:
    sys.path.insert(0, str(proj.path))
    try:
        return pickle.loads((proj.path / "models/model.pkl").read_bytes())
    finally:
        sys.path.remove(str(proj.path))


def test_the_examples_pipeline_answers_through_compiled_trees(example_built: Project) -> None:
    proj = example_built
    frame = pd.read_csv(proj.path / "data/raw/test.csv")
    server = Server(proj, "models/model.pkl")
    try:
        one = {"dataframe_split": {"columns": list(frame.columns),
                                   "data": frame.iloc[:1].to_numpy().tolist()}}
        assert _settled(server, one) == ("compiled", "in use")
        _answers_like_the_model(server, _example_model(proj), frame)
        assert _paths(server) == ("compiled", "in use")  # no request fell back
    finally:
        _stopped(server)
    text = _example_model(proj).steps[-1][1].booster_.model_to_string()
    cache = Path(platformdirs.user_cache_dir("mlbuild")) / "serve-compiled"
    cached = [t.with_suffix(".o") for t in cache.glob("*.txt") if t.read_text() == text]
    assert cached and all(obj.is_file() for obj in cached)
    before = [obj.stat().st_mtime_ns for obj in cached]
    again = Server(proj, "models/model.pkl")  # the next server loads the cached object
    try:
        assert _settled(again, one) == ("compiled", "in use")
        assert [obj.stat().st_mtime_ns for obj in cached] == before  # not compiled again
    finally:
        _stopped(again)


def _lightgbm_models(proj: Project, kinds: list[str]) -> pd.DataFrame:
    """models/<kind>.pkl for each kind, served under schemas:features; the rows to score."""
    proj.write("schemas.py", SCHEMA)
    yaml = YAML()
    settings = yaml.load(proj.path / "mlbuild.yaml")
    # one process trains every kind: each more would pay LightGBM's and pandas' imports again
    subprocess.run([sys.executable, "-c", TRAIN, *kinds], cwd=proj.path, env=_env(), check=True)
    for kind in kinds:
        settings.setdefault("serving", {})[kind] = {"input": "schemas:features"}
    yaml.dump(settings, proj.path / "mlbuild.yaml")
    rng = np.random.default_rng(11)
    return pd.DataFrame(rng.normal(size=(250, 5)), columns=FEATURES)


@pytest.mark.parametrize("kinds", [["binary", "multiclass", "regressor"]])
def test_lightgbm_models_answer_through_compiled_trees(example_built: Project,
                                                       kinds: list[str]) -> None:
    proj = example_built
    frame = _lightgbm_models(proj, kinds)
    servers = {kind: Server(proj, f"models/{kind}.pkl") for kind in kinds}
    try:
        for kind, server in servers.items():
            model = pickle.loads((proj.path / f"models/{kind}.pkl").read_bytes())
            one = {"dataframe_split": {"columns": FEATURES, "data": [[0.1] * 5]}}
            assert _settled(server, one) == ("compiled", "in use"), kind
            _answers_like_the_model(server, model, frame)
            assert _paths(server) == ("compiled", "in use"), kind
    finally:
        for server in servers.values():
            _stopped(server)


def test_trees_the_compiler_gets_wrong_are_caught_and_lightgbm_answers(
        example_built: Project) -> None:
    """lleaves compiles a linear-tree model's leaves as constants: its scores differ, the
    first request's proof finds it, and LightGBM's booster answers every request."""
    proj = example_built
    frame = _lightgbm_models(proj, ["linear"])
    model = pickle.loads((proj.path / "models/linear.pkl").read_bytes())
    server = Server(proj, "models/linear.pkl")
    try:
        one = {"dataframe_split": {"columns": FEATURES, "data": frame.iloc[:1].values.tolist()}}
        assert _settled(server, one) == ("booster", "differs")
        _answers_like_the_model(server, model, frame)
    finally:
        _stopped(server)


def test_without_lleaves_the_server_answers_through_lightgbm(example_built: Project) -> None:
    """A project-level `lleaves` package that cannot be imported stands where the optional
    extra is not installed (`python -m mlbuild` puts the project first on sys.path)."""
    proj = example_built
    proj.write("lleaves/__init__.py", 'raise ImportError("No module named \'lleaves\'")\n')
    frame = pd.read_csv(proj.path / "data/raw/test.csv")
    server = Server(proj, "models/model.pkl")
    try:
        one = {"dataframe_split": {"columns": list(frame.columns),
                                   "data": frame.iloc[:1].to_numpy().tolist()}}
        path, state = _settled(server, one)
        assert (path, state) == ("booster", "unavailable: No module named 'lleaves'")
        _answers_like_the_model(server, _example_model(proj), frame)
    finally:
        _stopped(server)


def test_a_near_tie_between_two_classes_is_left_to_lightgbm() -> None:
    """Raw scores whose two best classes are within TIE: LightGBM's own probabilities decide
    that row (its softmax could round the two into a tie that argmax breaks differently);
    the other rows are decided by the raw scores."""
    import lightgbm

    from mlbuild.serve.fastpath import _Booster

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(300, 5)), columns=FEATURES)
    labels = np.digitize(frame["f0"] + frame["f1"], [-1.0, 0.0, 1.0])
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(frame, labels)
    booster = _Booster(model)
    matrix = frame.iloc[:2].to_numpy()
    own = model.predict(frame.iloc[:2])
    wrong = (own + 1) % 4  # a class LightGBM did not choose, for both rows
    raw = np.zeros((2, 4))
    raw[0, wrong[0]], raw[0, own[0]] = 5.0, 5.0 - 1e-12  # row 0: a near tie
    raw[1, wrong[1]] = 5.0  # row 1: a clear winner, whatever LightGBM says
    assert booster.from_raw(raw, matrix).tolist() == [own[0], wrong[1]]
