"""`mlbuild export kfp` (the pipeline compiled for Kubeflow Pipelines), `export image` (the
Dockerfile its tasks run in) and `export task` (what each KFP task runs: one stage built
against the DVC remote)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlbuild.errors import UsageError

export_app = typer.Typer(no_args_is_help=True,
                         help="Compile the pipeline for Kubeflow Pipelines and its image.")


def _warn(message: str) -> None:
    sys.stderr.write(f"mlbuild: warning: {message}\n")


@export_app.command("kfp")
def kfp(
    stages: Annotated[list[str] | None, typer.Argument(
        metavar="[STAGE]...", help="Export these stages and their upstream (default: all).",
    )] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the KFP "
                                         "pipeline (IR YAML).")] = Path("pipeline.yaml"),
    image: Annotated[str, typer.Option("--image", help="The image the tasks run (see "
                                       "'mlbuild export image').")] = "mlbuild-task:latest",
    remote: Annotated[str | None, typer.Option("--remote", "-r", help="The DVC remote the "
                                               "tasks share (default: core.remote).")] = None,
    repo: Annotated[str | None, typer.Option("--repo", help="The git URL tasks clone "
                                             "(default: the remote 'origin').")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The pipeline's name (default: "
                                             "the project directory's).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Compile the variant kfp.local's "
                                        "SubprocessRunner can run (Python components, this "
                                        "machine's mlbuild).")] = False,
) -> None:
    """Compile the pipeline for Kubeflow Pipelines: one task per stage, the DVC remote as the
    shared store."""
    from mlbuild.export.kfpsdk import compile_plan
    from mlbuild.export.plan import ExportRequest, plan_export
    from mlbuild.files.layout import find_root

    root = find_root()
    plan = plan_export(root, ExportRequest(tuple(stages or ()), remote, repo, name))
    for warning in plan.warnings:
        _warn(warning)
    compile_plan(plan, output, image, local=local)
    typer.echo(f"mlbuild: wrote {output} ({len(plan.tasks)} task(s), revision "
               f"{plan.revision[:12]}, remote '{plan.remote}')")


@export_app.command("image")
def image(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the "
                                         "Dockerfile.")] = Path("Dockerfile.kfp"),
    tag: Annotated[str, typer.Option("--image", help="The image's name, for the build "
                                     "command in its header.")] = "mlbuild-task:latest",
) -> None:
    """Write the Dockerfile of the image the KFP tasks run (and its .dockerignore)."""
    from mlbuild.dvcfmt.yamlio import write_atomic
    from mlbuild.export.image import dockerfile, dockerignore
    from mlbuild.files.layout import find_root

    root = find_root()
    text = dockerfile(root, tag, str(output))
    write_atomic(output, text)
    ignore = root / ".dockerignore"
    if not ignore.exists():
        write_atomic(ignore, dockerignore())
    typer.echo(f"mlbuild: wrote {output}; build it with: docker build -f {output} -t {tag} .")


@export_app.command("task")
def task(
    stage: Annotated[str, typer.Argument(help="The one stage to build (a foreach member by "
                                         "its full name, such as train@1).")],
    remote: Annotated[str, typer.Option("--remote", "-r", help="The DVC remote to pull "
                                        "from and push to.")],
    repo: Annotated[str | None, typer.Option("--repo", help="Clone this repository first "
                                             "(default: build in the current project).")
                    ] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="The commit to check "
                                                 "out in the clone.")] = None,
    overrides: Annotated[str, typer.Option("--overrides", help="Hydra overrides, "
                                           "space-separated (model=logreg a.b=1).")] = "",
    hashes_to: Annotated[Path | None, typer.Option("--hashes-to", help="Write the output "
                                                   "hashes (JSON) here.")] = None,
    outcome_to: Annotated[Path | None, typer.Option("--outcome-to", help="Write the outcome "
                                                    "(ran, restored, ...) here.")] = None,
    metrics_to: Annotated[Path | None, typer.Option("--metrics-to", help="Write the small "
                                                    "uncached outputs (JSON) here.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the clone.")] = False,
) -> None:
    """Build exactly one stage against the DVC remote (what each KFP task runs): restore its
    upstream and, if the remote has them, its outputs; else run it; push what it made."""
    from mlbuild.cli.build import waiting
    from mlbuild.export.task import TaskRequest, run_task, write_outputs
    from mlbuild.files.layout import find_root

    if repo is None and revision is not None:
        raise UsageError("--revision needs --repo: the task clones that revision")
    result = run_task(TaskRequest(stage, remote, repo, revision, overrides, keep),
                      find_root() if repo is None else Path.cwd(),
                      on_notice=waiting)
    write_outputs(result, hashes_to, outcome_to, metrics_to)
    how = f" ({result.message})" if result.message else ""
    typer.echo(f"mlbuild: stage '{stage}' {result.outcome}{how}; its outputs and run-cache "
               f"entry are on remote '{remote}'")
    for path, md5 in sorted(result.hashes.items()):
        typer.echo(f"  {path}  {md5}")


def register(app: typer.Typer) -> None:
    """Add the export command group to the app."""
    app.add_typer(export_app, name="export")
