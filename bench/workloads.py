"""The workload registry: name -> (description, function)."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Ctx
from bench.datasets import w3, w4
from bench.example import w5
from bench.experiments import w7
from bench.kfp import w10
from bench.manyfiles import w9
from bench.report import Row
from bench.serving import w8
from bench.synthetic import w1, w2, w6

Workload = Callable[[Ctx], list[Row]]

WORKLOADS: dict[str, tuple[str, Workload]] = {
    "W1": ("100 trivial stages, 10 layers of 10: cold, no-op build, no-op status", w1),
    "W2": ("8 independent `sleep 1` stages: parallel cold build", w2),
    "W3": ("one stage with a 1 GiB output: commit time vs md5sum", w3),
    "W4": ("one stage writing 10,000 small files (a Python one-liner; `cp -r`): commit time, "
           "no-op status", w4),
    "W5": ("the embedded example pipeline: cold, no-op, one-param change", w5),
    "W6": ("1,000 trivial stages: no-op build time and peak memory", w6),
    "W7": ("sweeps of the example (6 and 12 variants, two at a time): exp run vs dvc's "
           "queue; exp show with 200 experiments", w7),
    "W8": ("the example's model served: `mlbuild serve` vs `mlflow models serve`, 1-row and "
           "100-row /invocations from 8 clients; a 50-client soak", w8),
    "W9": ("`mlbuild data add` vs `dvc add` of 100,000 files (1 GiB); status after changing "
           "10 of them", w9),
    "W10": ("1,000 trivial stages exported to Kubeflow Pipelines: `mlbuild export kfp`", w10),
}
