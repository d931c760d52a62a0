"""The one module that talks to the `kfp` SDK: an ExportPlan compiled into KFP v2's IR YAML.

One component serves every task of a kind (stages asking the same resources share one
executor, so a 1,000-stage pipeline holds one, not 1,000): its inputs name the stage, the
repository, the remote, the revision and Hydra overrides; its outputs are the stage's output
hashes, its outcome and its metrics. The cluster form is a container component running
`mlbuild` with `task_args`; the `local` form, for kfp.local's subprocess runner (which runs
only Python components), is a Python component that runs the same `task_args` through the
same `mlbuild`.
"""

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

from mlbuild.dvcfmt.yamlio import write_atomic
from mlbuild.errors import BadInputError
from mlbuild.export.plan import ExportPlan
from mlbuild.export.settings import Resources
from mlbuild.export.task import task_args


def _sdk() -> Any:
    try:
        import kfp
    except ImportError:
        raise BadInputError("the kfp SDK is not installed; install it with "
                            "pip install 'mlbuild[kfp]'") from None
    return kfp


def container_component(image: str) -> Any:
    """The cluster's component: the image's `mlbuild` runs one stage's task."""
    from kfp import dsl

    @dsl.container_component  # type: ignore[untyped-decorator]
    def mlbuild_stage(stage: str, repo: str, remote: str, revision: str, overrides: str,
                      hashes: dsl.OutputPath(str),  # type: ignore[valid-type]
                      outcome: dsl.OutputPath(str),  # type: ignore[valid-type]
                      metrics: dsl.OutputPath(str),  # type: ignore[valid-type]
                      ) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image=image, command=["mlbuild"], args=task_args(
            stage, repo, remote, revision, overrides, hashes, outcome, metrics))

    return mlbuild_stage


def local_component() -> Any:
    """The kfp.local variant's component (see mlbuild.export.kfplocal)."""
    from mlbuild.export.kfplocal import mlbuild_stage

    return mlbuild_stage


def _configure(task: Any, res: Resources, plan: ExportPlan) -> None:
    """Caching, resources, retries and the remote's credentials of one task, by the SDK."""
    from kfp import kubernetes

    task.set_caching_options(plan.caching)
    if res.cpu:
        task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu)
    if res.memory:
        task.set_memory_request(res.memory).set_memory_limit(res.memory)
    if res.gpu:
        task.set_accelerator_type(res.gpu_type).set_accelerator_limit(res.gpu)
    if res.retries:
        task.set_retry(num_retries=res.retries)
    if plan.env:  # names only: the values stay in the cluster's secret
        kubernetes.use_secret_as_env(task, secret_name=plan.secret,
                                     secret_key_to_env={name: name for name in plan.env})


def prototype(plan: ExportPlan, component: Any, kinds: list[Resources]) -> Any:
    """The KFP pipeline the SDK compiles: one task of each kind (its resources), displayed
    as 'kind-N'; the revision and the Hydra overrides are pipeline parameters (defaults: the
    exported commit, none)."""
    from kfp import dsl

    def body(revision: str = plan.revision, overrides: str = "") -> None:
        for index, res in enumerate(kinds):
            task = component(stage=f"kind-{index}", repo=plan.repo, remote=plan.remote,
                             revision=revision, overrides=overrides)
            task.set_display_name(f"kind-{index}")
            _configure(task, res, plan)

    body.__name__ = plan.name.replace("-", "_")
    return dsl.pipeline(name=plan.name, description=(
        f"mlbuild pipeline at {plan.revision[:12]}: each task builds one stage against the "
        f"DVC remote '{plan.remote}'"))(body)


def task_keys(stages: list[str]) -> dict[str, str]:
    """Each stage's task name in the IR: as the SDK sanitises names (lower case, letters,
    digits and '-'), made unique with a number as the SDK does."""
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for stage in stages:
        base = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", stage.lower())).strip("-") or "stage"
        key, index = base, 2
        while key in taken:
            key, index = f"{base}-{index}", index + 1
        taken.add(key)
        keys[stage] = key
    return keys


def expand(docs: list[Any], plan: ExportPlan, kinds: list[Resources]) -> None:
    """One task per stage, each a copy of the compiled task of its kind with the stage's
    name, display name and upstream edges, and its own component entry (as the SDK gives
    every task; kfp.local keeps a task's outputs under its component's name) pointing at
    its kind's executor."""
    spec = docs[0]
    tasks, components = spec["root"]["dag"]["tasks"], spec["components"]
    compiled = {t["taskInfo"]["name"]: t for t in tasks.values()}
    keys = task_keys([t.stage for t in plan.tasks])
    expanded: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for item in plan.tasks:
        task = copy.deepcopy(compiled[f"kind-{kinds.index(item.resources)}"])
        key = keys[item.stage]
        own[f"comp-{key}"] = components[task["componentRef"]["name"]]
        task["componentRef"]["name"] = f"comp-{key}"
        task["taskInfo"]["name"] = item.stage
        task["inputs"]["parameters"]["stage"]["runtimeValue"]["constant"] = item.stage
        if item.upstream:
            task["dependentTasks"] = sorted(keys[u] for u in item.upstream)
        expanded[key] = task
    tasks.clear()
    tasks.update(expanded)
    components.clear()
    components.update(own)


def compile_plan(plan: ExportPlan, output: Path, image: str, local: bool = False) -> None:
    """Compile *plan* to KFP IR YAML at *output*: the SDK compiles the component, the
    pipeline parameters and one task of each kind; every stage's task is a copy of its kind's.

    Why not one SDK task per stage: the SDK's compiler is quadratic in the number of tasks
    (1,000 stages took 17 s), and each of its tasks would carry its own copy of the component.
    """
    import yaml

    kfp = _sdk()
    component = local_component() if local else container_component(image)
    kinds = list(dict.fromkeys(t.resources for t in plan.tasks)) or [Resources()]
    with tempfile.TemporaryDirectory(prefix="mlbuild-kfp-") as scratch:
        compiled = Path(scratch) / "prototype.yaml"
        kfp.compiler.Compiler().compile(prototype(plan, component, kinds),
                                        package_path=str(compiled))
        docs = list(yaml.load_all(compiled.read_text(), Loader=_loader(yaml)))
    expand(docs, plan, kinds)
    text = yaml.dump_all(docs, Dumper=_dumper(yaml), sort_keys=True)
    write_atomic(output, f"# PIPELINE DEFINITION (KFP v2 IR), written by mlbuild export kfp\n"
                 f"# Name: {plan.name}\n# Revision: {plan.revision}\n{text}")


def _dumper(yaml: Any) -> Any:
    """libyaml's dumper when there is one; every component written out in full (the tasks
    of a kind share one entry in memory, which would otherwise become YAML aliases)."""
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return type("Dumper", (base,), {"ignore_aliases": lambda self, data: True})


def _loader(yaml: Any) -> Any:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)
