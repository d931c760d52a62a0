"""The kfp.local variant's Python component: the same `mlbuild export task` command line as the
cluster's container (mlbuild.export.task.task_args), run by this machine's `mlbuild`. Its
source is shipped into the compiled YAML, so it imports what it needs inside."""


from kfp import dsl


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)  # type: ignore[untyped-decorator]
def mlbuild_stage(stage: str, repo: str, remote: str, revision: str, overrides: str,
                  hashes: dsl.OutputPath(str),  # type: ignore[valid-type]
                  outcome: dsl.OutputPath(str),  # type: ignore[valid-type]
                  metrics: dsl.OutputPath(str),  # type: ignore[valid-type]
                  ) -> None:
    """Build one stage against the remote in a fresh clone (mlbuild export task)."""
    import subprocess
    import sys

    from mlbuild.export.task import task_args

    args = task_args(stage, repo, remote, revision, overrides, hashes, outcome, metrics)
    subprocess.run([sys.executable, "-m", "mlbuild", *args], check=True)
