"""The stage DAG: validation (duplicates, overlaps, cycles, missing deps) and pure planning."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlbuild.errors import GraphError, UsageError, did_you_mean
from mlbuild.pipeline.model import Pipeline, Stage


def _parents(path: str) -> Iterable[str]:
    while True:
        path = posixpath.dirname(path)
        if not path:
            return
        yield path


@dataclass(frozen=True)
class Graph:
    """Stages plus upstream edges: upstream[name] = stages whose outputs it depends on."""

    stages: dict[str, Stage]
    upstream: dict[str, tuple[str, ...]]
    producers: dict[str, str]  # output path -> stage name


def _producers(pipeline: Pipeline) -> dict[str, str]:
    producers: dict[str, str] = {}
    for stage in pipeline.stages.values():
        for out in stage.outs:
            other = producers.get(out.path)
            if other is not None:
                raise GraphError(
                    f"output '{out.path}' is declared by both stage '{other}' and stage "
                    f"'{stage.name}'; an output must have exactly one producing stage"
                )
            producers[out.path] = stage.name
    for path, name in producers.items():
        for parent in _parents(path):
            other = producers.get(parent)
            if other is not None:
                raise GraphError(
                    f"output '{path}' of stage '{name}' is inside output '{parent}' of stage "
                    f"'{other}'; outputs must not overlap"
                )
    return producers


def _find_upstream(path: str, producers: dict[str, str], below: dict[str, set[str]]) -> set[str]:
    found = {producers[p] for p in (path, *_parents(path)) if p in producers}
    return found | below.get(path, set())


def _find_cycle(upstream: dict[str, tuple[str, ...]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for up in upstream[node]:
            if state.get(up) == 1:
                return [*stack[stack.index(up):], up]
            if up not in state and (cycle := visit(up)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in upstream:
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def build_graph(pipeline: Pipeline, exists: Callable[[str], bool]) -> Graph:
    """Validate the pipeline and connect stages through their paths."""
    producers = _producers(pipeline)
    below: dict[str, set[str]] = {}
    for path, name in producers.items():
        for parent in _parents(path):
            below.setdefault(parent, set()).add(name)
    upstream: dict[str, tuple[str, ...]] = {}
    for stage in pipeline.stages.values():
        ups: set[str] = set()
        for param in stage.params:
            ups |= _find_upstream(param.path, producers, below)
        for dep in stage.deps:
            found = _find_upstream(dep.path, producers, below)
            if not found and not exists(dep.path):
                raise GraphError(
                    f"stage '{stage.name}': dependency '{dep.def_path}' does not exist and no "
                    "stage produces it; create it, track it with 'dvc add', or fix the path"
                )
            ups |= found
        if stage.name in ups:
            raise GraphError(f"stage '{stage.name}' depends on its own output")
        upstream[stage.name] = tuple(sorted(ups))
    cycle = _find_cycle(upstream)
    if cycle:
        raise GraphError("dependency cycle between stages: " + " -> ".join(reversed(cycle)))
    return Graph(stages=dict(pipeline.stages), upstream=upstream, producers=producers)


def topo_order(graph: Graph) -> list[str]:
    """Stages in a deterministic topological order (dvc.yaml order breaks ties)."""
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for up in graph.upstream[name]:
            visit(up)
        order.append(name)

    for name in graph.stages:
        visit(name)
    return order


def _match(graph: Graph, target: str) -> list[str]:
    """Stages a target names, as `dvc repro` accepts them: a stage, a foreach/matrix group,
    `dvc.yaml:stage`, or an output path (the stage that produces it)."""
    name = target.removeprefix("dvc.yaml:").removeprefix("./dvc.yaml:")
    matches = [n for n in graph.stages if n == name or n.split("@", 1)[0] == name]
    if not matches:
        path = posixpath.normpath(target.replace("\\", "/")).removesuffix("/")
        found = _find_upstream(path, graph.producers, {})
        matches = sorted(found)
    if not matches:
        raise UsageError(f"unknown stage '{target}'{did_you_mean(name, graph.stages)}; give a "
                         "stage name, dvc.yaml:<stage> or an output path")
    return matches


def select(graph: Graph, targets: Iterable[str]) -> list[str]:
    """The targets and everything upstream of them, topologically ordered."""
    wanted: set[str] = set()
    todo = []
    for target in targets:
        todo.extend(_match(graph, target))
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(graph.upstream[name])
    return [n for n in topo_order(graph) if n in wanted]
