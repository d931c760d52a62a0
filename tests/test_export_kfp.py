"""`mlbuild export kfp` / `export task`: the pipeline compiled for Kubeflow Pipelines, reloaded
with the kfp SDK, run for real with kfp.local (every task in its own fresh clone, only the DVC
remote shared), and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Project, _env, copy_example
from tests.scenario import lock, new_project

pytest.importorskip("kfp")


def _share(proj: Project, remote: Path, url: str | None = None) -> None:
    """The default remote 'shared' (the absolute directory *remote*, or *url*), committed."""
    proc = proj.dvc("remote", "add", "-d", "shared", url or str(remote))
    assert proc.returncode == 0, proc.stderr
    proj.git("add", "-A")
    proj.git("commit", "-qm", "shared remote")


def _export(proj: Project, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return proj.run("export", "kfp", "-o", str(out), "--repo", str(proj.path), *args)


def _ir(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def _tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """display name (the stage) -> task, with dependentTasks mapped to stage names."""
    tasks = spec["root"]["dag"]["tasks"]
    names = {key: t["taskInfo"]["name"] for key, t in tasks.items()}
    return {names[key]: {**t, "after": sorted(names[d] for d in t.get("dependentTasks", []))}
            for key, t in tasks.items()}


def _dag(proj: Project) -> dict[str, list[str]]:
    report = proj.run_json("dag")
    return {s["stage"]: sorted(s["upstream"]) for s in report["stages"]}  # type: ignore[union-attr]


def _reload(path: Path) -> dict[str, str]:
    """The pipeline as the kfp SDK reads it back: task name -> display name."""
    from kfp import components

    pipeline = components.load_component_from_file(str(path))
    return {k: t.task_info.name for k, t in pipeline.pipeline_spec.root.dag.tasks.items()}


def test_example_compiles_to_one_task_per_stage_with_the_dags_edges(
        example: Project, tmp_path: Path) -> None:
    _share(example, tmp_path / "remote")
    out = tmp_path / "pipeline.yaml"
    proc = _export(example, out, "--image", "registry.example/task:1")
    assert proc.returncode == 0, proc.stderr
    assert "every node that runs a task must mount it at that same path" in proc.stderr
    spec = _ir(out)[0]
    tasks = _tasks(spec)
    assert {s: t["after"] for s, t in tasks.items()} == _dag(example)
    assert sorted(_reload(out).values()) == sorted(tasks)
    head = example.git("rev-parse", "HEAD").stdout.strip()
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["revision"]["defaultValue"] == head
    assert params["overrides"]["defaultValue"] == ""
    for stage, task in tasks.items():
        assert task["cachingOptions"] == {}  # KFP's own caching off: the run-cache decides
        inputs = task["inputs"]["parameters"]
        assert inputs["stage"]["runtimeValue"]["constant"] == stage
        assert inputs["remote"]["runtimeValue"]["constant"] == "shared"
        assert inputs["revision"] == {"componentInputParameter": "revision"}
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == "registry.example/task:1"
    assert executor["container"]["command"] == ["mlbuild"]
    outputs = next(iter(spec["components"].values()))["outputDefinitions"]["parameters"]
    assert set(outputs) == {"hashes", "outcome", "metrics"}
    assert not example.git("status", "--porcelain").stdout.strip()  # nothing written inside


WIDE = {f"s{layer}_{i}": {"cmd": f"cp {'seed.txt' if layer == 0 else f'o{layer - 1}_{i}'} "
                                 f"o{layer}_{i}",
                          "deps": ["seed.txt" if layer == 0 else f"o{layer - 1}_{i}"],
                          "outs": [f"o{layer}_{i}"]}
        for layer in range(4) for i in range(6)}


def _wide(dest: Path) -> Project:
    """24 stages in 4 layers, a foreach group joining the last layer, resources and an S3
    remote (export never contacts it)."""
    stages: dict[str, Any] = dict(WIDE)
    stages["join"] = {"foreach": ["a", "b"], "do": {
        "cmd": "cat o3_0 o3_1 > j_${item}", "deps": ["o3_0", "o3_1"], "outs": ["j_${item}"]}}
    settings = textwrap.dedent("""
        kfp:
          caching: true
          secret: team-remote
          defaults: {cpu: 500m, memory: 1Gi}
          stages:
            join: {cpu: "2", memory: 4Gi, gpu: 1, retries: 3}
        """)
    proj = new_project(dest, {"seed.txt": "seed\n", "mlbuild.yaml": settings,
                              "dvc.yaml": yaml.safe_dump({"stages": stages})})
    _share(proj, dest, "s3://bucket/project")
    return proj


def test_wider_pipeline_keeps_edges_resources_retries_and_credential_names(
        tmp_path: Path) -> None:
    proj = _wide(tmp_path / "wide")
    out = tmp_path / "wide.yaml"
    proc = _export(proj, out, "--remote", "shared")
    assert proc.returncode == 0, proc.stderr
    assert "mount" not in proc.stderr  # a cloud remote: no warning
    docs = _ir(out)
    tasks = _tasks(docs[0])
    assert {s: t["after"] for s, t in tasks.items()} == _dag(proj)
    assert len(_reload(out)) == 26
    assert tasks["join@a"]["retryPolicy"]["maxRetryCount"] == 3
    assert "retryPolicy" not in tasks["s0_0"]
    assert tasks["s0_0"]["cachingOptions"] == {"enableCache": True}
    executors = docs[0]["deploymentSpec"]["executors"]
    join = executors[docs[0]["components"][tasks["join@a"]["componentRef"]["name"]][
        "executorLabel"]]["container"]["resources"]
    assert join["cpuLimit"] == 2 and join["memoryLimit"] == 4.294967296
    assert join["accelerator"]["resourceCount"] == "1"
    other = executors[docs[0]["components"][tasks["s2_3"]["componentRef"]["name"]][
        "executorLabel"]]["container"]["resources"]
    assert other["cpuLimit"] == 0.5
    assert len(executors) == 2  # one per kind of task, not one per stage
    assert len(docs[0]["components"]) == 26  # each task its own (small) component entry
    platform = json.dumps(docs[1])  # names of the secret's keys, never values
    assert "team-remote" in platform and "AWS_SECRET_ACCESS_KEY" in platform
    part = tmp_path / "part.yaml"  # named stages: they and their upstream only
    assert _export(proj, part, "s2_1").returncode == 0
    assert set(_tasks(_ir(part)[0])) == {"s0_1", "s1_1", "s2_1"}


def test_a_declarations_resources_win_over_mlbuild_yaml(example: Project, tmp_path: Path
                                                        ) -> None:
    _share(example, tmp_path / "remote")
    example.write("mlbuild.yaml", example.read("mlbuild.yaml")
                  + "kfp:\n  defaults: {cpu: 250m}\n")
    example.write("stages/train.yaml", example.read("stages/train.yaml")
                  + "resources: {cpu: '2', retries: 1}\n")
    example.git("commit", "-qam", "resources")
    out = tmp_path / "p.yaml"
    assert _export(example, out).returncode == 0
    spec = _ir(out)[0]
    tasks = _tasks(spec)

    def cpu(stage: str) -> float:
        label = spec["components"][tasks[stage]["componentRef"]["name"]]["executorLabel"]
        return float(spec["deploymentSpec"]["executors"][label]["container"]["resources"][
            "cpuLimit"])

    assert (cpu("train"), cpu("prepare")) == (2.0, 0.25)
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 1
    example.write("stages/train.yaml", example.read("stages/train.yaml").replace(
        "cpu: '2'", "cpu: many"))
    example.git("commit", "-qam", "bad resources")
    assert "stages/train.yaml.resources.cpu" in _refused(example, tmp_path / "q.yaml")
    assert example.run("status").returncode == 0  # the key is allowed in a declaration


def _refused(proj: Project, out: Path, *args: str) -> str:
    proc = _export(proj, out, *args)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert not out.exists()
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("mlbuild: error: ") and "Traceback" not in proc.stderr
    return line


def test_bad_input_exits_2_with_one_line_and_writes_nothing(
        example: Project, tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    assert "relative path '../dvc-storage'" in _refused(example, out)
    assert "unknown DVC remote 'sharde' (did you mean 'shared'?" in _refused(
        _shared_example(example, tmp_path), out, "-r", "sharde")
    assert "unknown stage 'trian' (did you mean 'train'?" in _refused(example, out, "trian")
    assert example.dvc("remote", "add", "--local", "mine", str(tmp_path)).returncode == 0
    assert "configured outside the repository's .dvc/config" in _refused(example, out, "-r",
                                                                          "mine")
    example.write("stages/train.py", example.read("stages/train.py") + "\n# edited\n")
    assert "uncommitted changes" in _refused(example, out)
    example.git("checkout", "--", "stages/train.py")
    example.write("mlbuild.yaml", example.read("mlbuild.yaml")
                  + "kfp:\n  stages:\n    train: {cpu: lots}\n")
    example.git("commit", "-qam", "bad cpu")
    assert "mlbuild.yaml.kfp.stages.train.cpu" in _refused(example, out)


def _shared_example(example: Project, tmp_path: Path) -> Project:
    _share(example, tmp_path / "remote")
    return example


def test_no_remote_at_all_is_refused(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": yaml.safe_dump({"stages": WIDE}),
                                        "seed.txt": "seed\n"})
    assert "no DVC remote is configured" in _refused(proj, tmp_path / "p.yaml")


def test_an_uncached_output_another_stage_needs_is_refused_with_the_fix(
        tmp_path: Path) -> None:
    stages = {"a": {"cmd": "cp seed.txt a.txt", "deps": ["seed.txt"],
                    "outs": [{"a.txt": {"cache": False}}]},
              "b": {"cmd": "cp a.txt b.txt", "deps": ["a.txt"], "outs": ["b.txt"]}}
    proj = new_project(tmp_path / "p", {"dvc.yaml": yaml.safe_dump({"stages": stages}),
                                        "seed.txt": "seed\n"})
    _share(proj, tmp_path / "remote")
    line = _refused(proj, tmp_path / "p.yaml")
    assert "stage 'b' depends on 'a.txt', which stage 'a' declares with cache: false" in line
    assert "drop cache: false" in line
    # exporting only 'a' is fine: nothing downstream needs its uncached output
    assert _export(proj, tmp_path / "a.yaml", "a").returncode == 0


def test_task_bad_input_exits_2(example: Project, tmp_path: Path) -> None:
    _share(example, tmp_path / "remote")
    assert example.dvc("remote", "add", "other", str(tmp_path / "other")).returncode == 0
    for args, words in (
            (["train", "-r", "other"], "remote 'other' is not this project's default remote"),
            (["trian", "-r", "shared"], "unknown stage 'trian' (did you mean 'train'?"),
            (["train", "-r", "nope"], "unknown DVC remote 'nope'"),
            (["train", "-r", "shared", "--revision", "abc"], "--revision needs --repo"),
            (["train", "-r", "shared", "--repo", str(tmp_path / "missing")],
             "cannot clone the repository"),
            (["train", "-r", "shared", "--repo", str(example.path), "--revision", "f" * 40],
             "is not in the repository")):
        proc = example.run("export", "task", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


RUN_LOCAL = """
import json, sys
from pathlib import Path
from kfp import components, local
root = Path(sys.argv[2])
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
components.load_component_from_file(sys.argv[1])()
(run,) = [p for p in root.iterdir() if p.is_dir()]
out = {task.name: {name: (task / name).read_text() for name in ("hashes", "outcome", "metrics")}
       for task in run.iterdir() if (task / "outcome").exists()}
print(json.dumps(out))
"""


def _run_local(pipeline: Path, scratch: Path) -> dict[str, dict[str, Any]]:
    """kfp.local runs the compiled pipeline: stage -> {hashes, outcome, metrics}."""
    scratch.mkdir()
    proc = subprocess.run([sys.executable, "-c", RUN_LOCAL, str(pipeline), str(scratch)],
                          env=_env(), capture_output=True, text=True, timeout=900,
                          cwd=scratch)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    by_task = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {k: t["taskInfo"]["name"] for k, t in _ir(pipeline)[0]["root"]["dag"]["tasks"].items()}
    return {names[k]: {"hashes": json.loads(v["hashes"]), "outcome": v["outcome"],
                       "metrics": json.loads(v["metrics"])} for k, v in by_task.items()}


def test_kfp_local_run_matches_the_local_build_and_reruns_nothing(
        built_example: Path, tmp_path: Path) -> None:
    proj = copy_example(tmp_path / "proj")
    remote = tmp_path / "remote"
    assert proj.run("pull", "data.dvc").returncode == 0  # from the example's own remote
    _share(proj, remote)
    assert proj.run("push", "-r", "shared", "data.dvc").returncode == 0
    pipeline = tmp_path / "local.yaml"
    proc = _export(proj, pipeline, "--local")
    assert proc.returncode == 0, proc.stderr
    expected = {stage: {o["path"]: o["md5"] for o in entry.get("outs", [])}
                for stage, entry in lock(Project(built_example)).items()}

    first = _run_local(pipeline, tmp_path / "run1")
    assert {s: r["outcome"] for s, r in first.items()} == dict.fromkeys(expected, "ran")
    assert {s: r["hashes"] for s, r in first.items()} == expected
    metrics = json.loads((built_example / "metrics.json").read_text())
    assert first["evaluate"]["metrics"] == {"metrics.json": metrics}
    assert not (proj.path / "models").exists()  # the tasks worked in clones of their own

    second = _run_local(pipeline, tmp_path / "run2")
    assert {s: r["outcome"] for s, r in second.items()} == dict.fromkeys(expected, "restored")
    assert {s: r["hashes"] for s, r in second.items()} == expected


def test_no_op_run_and_help_never_import_kfp(example_built: Project) -> None:
    for args in (["run"], ["--help"], ["export", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlbuild", *args],
                              cwd=example_built.path, env=_env(), capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0]
                    for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "kfp" not in imported and "kubernetes" not in imported, args


def test_task_never_runs_an_upstream_stage_and_restores_what_the_remote_has(
        tmp_path: Path) -> None:
    stages = {"a": {"cmd": "cp seed.txt a.txt", "deps": ["seed.txt"], "outs": ["a.txt"]},
              "b": {"cmd": "cp a.txt b.txt", "deps": ["a.txt"], "outs": ["b.txt"]}}
    proj = new_project(tmp_path / "p", {"dvc.yaml": yaml.safe_dump({"stages": stages}),
                                        "seed.txt": "seed\n"})
    _share(proj, tmp_path / "remote")
    outcome = tmp_path / "outcome"

    def task(stage: str) -> subprocess.CompletedProcess[str]:
        return proj.run("export", "task", stage, "-r", "shared", "--repo", str(proj.path),
                        "--outcome-to", str(outcome), "--hashes-to", str(tmp_path / "h"))

    early = task("b")  # a's task has not pushed anything yet
    assert early.returncode == 1, early.stderr
    assert "stage 'a' would have to run, but this build may only run b" in early.stderr
    assert task("a").returncode == 0 and outcome.read_text() == "ran"
    assert task("b").returncode == 0 and outcome.read_text() == "ran"
    hashes = json.loads((tmp_path / "h").read_text())
    assert hashes == {"b.txt": "0dabe0ac327240bfa13585fcab742c67"}  # md5 of "seed\n"
    again = task("b")
    assert again.returncode == 0 and outcome.read_text() == "restored", again.stderr
    assert not (proj.path / "a.txt").exists()  # everything happened in clones
