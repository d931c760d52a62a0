"""The DAG on small literal pipelines: edges, validation and planning (pure, no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlbuild.errors import ConfigError, GraphError, UsageError
from mlbuild.pipeline.graph import build_graph, select, topo_order
from mlbuild.pipeline.model import build_pipeline


def _graph(stages: dict[str, Any], existing: tuple[str, ...] = ()) -> Any:
    pipeline = build_pipeline(Path("/p"), {"stages": stages})
    return build_graph(pipeline, lambda p: p in existing)


def test_edges_through_files_and_directories() -> None:
    graph = _graph({
        "train": {"cmd": "t", "deps": ["data/prep/train.csv"], "outs": ["model"]},
        "prep": {"cmd": "p", "deps": ["raw"], "outs": ["data/prep"]},
        "report": {"cmd": "r", "deps": ["model", "data"], "outs": ["report.md"]},
    }, existing=("raw",))
    assert graph.upstream == {"train": ("prep",), "prep": (), "report": ("prep", "train")}
    assert topo_order(graph) == ["prep", "train", "report"]
    assert select(graph, ["train"]) == ["prep", "train"]


def test_cycle_names_the_stages() -> None:
    with pytest.raises(GraphError, match="cycle") as err:
        _graph({"a": {"cmd": "x", "deps": ["b.txt"], "outs": ["a.txt"]},
                "b": {"cmd": "y", "deps": ["a.txt"], "outs": ["b.txt"]}})
    assert "a" in str(err.value) and "b" in str(err.value)


def test_duplicate_and_overlapping_outputs() -> None:
    with pytest.raises(GraphError, match="declared by both"):
        _graph({"a": {"cmd": "x", "outs": ["o"]}, "b": {"cmd": "y", "outs": ["o"]}})
    with pytest.raises(GraphError, match="inside output"):
        _graph({"a": {"cmd": "x", "outs": ["o"]}, "b": {"cmd": "y", "outs": ["o/x"]}})


def test_missing_dependency() -> None:
    with pytest.raises(GraphError, match="does not exist and no stage produces it"):
        _graph({"a": {"cmd": "x", "deps": ["nowhere.csv"], "outs": ["o"]}})


def test_unknown_target_suggests() -> None:
    graph = _graph({"train": {"cmd": "x", "outs": ["o"]}})
    with pytest.raises(UsageError, match="did you mean 'train'"):
        select(graph, ["trian"])


def test_foreach_group_target_selects_all_members() -> None:
    graph = _graph({"s@1": {"cmd": "x", "outs": ["o1"]}, "s@2": {"cmd": "y", "outs": ["o2"]}})
    assert select(graph, ["s"]) == ["s@1", "s@2"]


@pytest.mark.parametrize(("stage", "message"), [
    ({"cmd": "x", "outz": ["o"]}, "did you mean 'outs'"),
    ({"deps": ["a"]}, "'cmd' is required"),
    ({"cmd": "x", "outs": ["../o"]}, "outside the project"),
    ({"cmd": "x", "outs": ["/tmp/o"]}, "absolute"),
    ({"cmd": "x", "outs": [{"o": {"cahce": False}}]}, "did you mean 'cache'"),
])
def test_stage_validation(stage: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _graph({"s": stage})


def test_targets_as_dvc_accepts_them() -> None:
    graph = _graph({
        "prep": {"cmd": "p", "deps": ["raw"], "outs": ["data/prep"]},
        "train": {"cmd": "t", "deps": ["data/prep/train.csv"], "outs": ["model.pkl"]},
    }, existing=("raw",))
    assert select(graph, ["dvc.yaml:train"]) == ["prep", "train"]
    assert select(graph, ["model.pkl"]) == ["prep", "train"]
    assert select(graph, ["data/prep/train.csv"]) == ["prep"]  # a file inside an output dir
    with pytest.raises(UsageError, match="did you mean 'train'"):
        select(graph, ["dvc.yaml:trian"])
