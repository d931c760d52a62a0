"""The one module that talks to the `kfp` SDK: an ExportPlan compiled into KFP v2's IR YAML.

One component serves every task (so a 1,000-stage pipeline holds one executor, not 1,000):
its inputs name the stage, the repository, the remote, the revision and Hydra overrides, and
its outputs are the stage's output hashes, its outcome and its metrics. The cluster form is a
container component running `mlbuild` with `task_args`; the `local` form, for kfp.local's
subprocess runner (which runs only Python components), is a Python component that runs the
same `task_args` through the same `mlbuild`.
"""


from pathlib import Path
from typing import Any

from mlbuild.errors import BadInputError
from mlbuild.export.plan import ExportPlan, Task
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


def _configure(task: Any, spec: Task, plan: ExportPlan) -> None:
    """Display name, caching, resources, retries and the remote's credentials of one task."""
    from kfp import kubernetes

    task.set_display_name(spec.stage)
    task.set_caching_options(plan.caching)
    res = spec.resources
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


def pipeline(plan: ExportPlan, component: Any) -> Any:
    """The KFP pipeline: one task per stage, edges from the DAG; the revision and the Hydra
    overrides are pipeline parameters (defaults: the exported commit, none)."""
    from kfp import dsl

    def body(revision: str = plan.revision, overrides: str = "") -> None:
        tasks: dict[str, Any] = {}
        for spec in plan.tasks:
            task = component(stage=spec.stage, repo=plan.repo, remote=plan.remote,
                             revision=revision, overrides=overrides)
            _configure(task, spec, plan)
            ups = [tasks[u] for u in spec.upstream if u in tasks]
            if ups:
                task.after(*ups)
            tasks[spec.stage] = task

    body.__name__ = plan.name.replace("-", "_")
    return dsl.pipeline(name=plan.name, description=(
        f"mlbuild pipeline at {plan.revision[:12]}: each task builds one stage against the "
        f"DVC remote '{plan.remote}'"))(body)


def compile_plan(plan: ExportPlan, output: Path, image: str, local: bool = False) -> None:
    """Compile *plan* to KFP IR YAML at *output*."""
    kfp = _sdk()
    component = local_component() if local else container_component(image)
    kfp.compiler.Compiler().compile(pipeline(plan, component), package_path=str(output))
