"""What every workload gets: sizes, the runner, the two CLIs and a scratch directory."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.measure import BenchError, Result, Runner, Series
from bench.projects import Tools, init_repo, remove_tree

MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; `--quick` shrinks them."""

    w1_layers: int = 10
    w1_width: int = 10
    w2_stages: int = 8
    w3_bytes: int = 1024 * MIB
    w4_files: int = 10_000
    w6_layers: int = 10
    w6_width: int = 100
    w8_single: int = 3000  # requests per repetition, 1-row bodies
    w8_batch: int = 600  # requests per repetition, 100-row bodies
    w8_soak: float = 30.0  # seconds of the 50-client soak
    w9_files: int = 100_000
    w9_bytes: int = 1024 * MIB

    @classmethod
    def quick(cls) -> Sizes:
        """Small sizes for a smoke run."""
        return cls(w1_layers=4, w1_width=5, w3_bytes=128 * MIB, w4_files=1_000,
                   w6_layers=5, w6_width=40, w8_single=600, w8_batch=150, w8_soak=10.0,
                   w9_files=5_000, w9_bytes=50 * MIB)


@dataclass
class Ctx:
    """Shared state of one benchmark run."""

    runner: Runner
    tools: Tools
    scratch: Path
    reps: int
    sizes: Sizes
    w6_dvc_reps: int = 1
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def mlbuild(self, *args: str) -> list[str]:
        """argv of an mlbuild command."""
        return [self.tools.mlbuild, *args]

    def dvc(self, *args: str) -> list[str]:
        """argv of a dvc command."""
        return [self.tools.dvc, *args]

    def workdir(self, name: str) -> Path:
        """A new, empty directory under the scratch root."""
        path = self.scratch / f"{name}-{next(self._ids)}"
        remove_tree(path)
        path.mkdir(parents=True)
        return path

    def timed(self, argv: list[str], cwd: Path, series: Series) -> Result:
        """Run one timed command and record its wall time and peak RSS in *series*."""
        res = self.runner.run(argv, cwd)
        series.add(res.seconds, res.maxrss_mb, res.cpu_seconds)
        return res

    def template(self, name: str, files: dict[str, str]) -> Path:
        """A generated project (git + dvc initialised, files committed) to copy per rep."""
        path = self.workdir(name)
        init_repo(self.runner, self.tools, path, files)
        return path


def tool_order(rep: int) -> tuple[str, str]:
    """Alternate which tool goes first, so that neither always runs on a warmer machine."""
    return ("mlbuild", "dvc") if rep % 2 == 0 else ("dvc", "mlbuild")


def dvc_yaml(stages: dict[str, dict[str, object]]) -> str:
    """A dvc.yaml with the stages in the given order."""
    return yaml.safe_dump({"stages": stages}, sort_keys=False, width=1000)


def expect_up_to_date(res: Result, tool: str) -> None:
    """Check that a status command reports nothing stale (the no-op really was a no-op)."""
    text = res.stdout + res.stderr
    phrase = "Pipeline is up to date" if tool == "mlbuild" else "Data and pipelines are up to date"
    if phrase not in text:
        raise BenchError(
            f"{tool} status does not report the pipeline up to date after the build:\n"
            + "\n".join(text.strip().splitlines()[-20:])
        )


def mtime(path: Path) -> int:
    """mtime in ns, or -1 when missing."""
    return path.stat().st_mtime_ns if path.exists() else -1


def run_cycle(
    ctx: Ctx, proj: Path, tool: str, steps: dict[str, list[str]], series: dict[str, Series],
) -> None:
    """Run timed steps in one project: 'cold*' builds, 'noop*' builds, 'status*' checks.

    After a cold build dvc.lock must exist; a no-op build must not rewrite it; a status step
    must report the pipeline up to date. These checks keep the numbers honest.
    """
    lock = proj / "dvc.lock"
    for key, argv in steps.items():
        before = mtime(lock)
        res = ctx.timed(argv, proj, series[f"{key}:{tool}"])
        if key.startswith("cold") and not lock.exists():
            raise BenchError(f"{tool}: no dvc.lock after the cold build in {proj}")
        if key.startswith("noop") and mtime(lock) != before:
            note = f"warning: {tool}: a no-op `{' '.join(argv[1:])}` rewrote dvc.lock"
            if note not in ctx.notes:
                ctx.notes.append(note)
        if key.startswith("status"):
            expect_up_to_date(res, tool)
