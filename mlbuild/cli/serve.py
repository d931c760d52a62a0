"""`mlbuild serve` (an inference server: Open Inference Protocol v2, MLflow's /invocations,
/metrics) and `mlbuild predict` (batch scoring with the same input contract)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlbuild.errors import UsageError

if TYPE_CHECKING:
    from mlbuild.serve.service import Candidate, Settings

MIB = 1024 * 1024
REF_HELP = ("NAME (the version in 'prod', else the latest), NAME@vX.Y.Z, NAME@latest, "
            "NAME#STAGE, or the path of a pickled model.")


def _root() -> Path:
    from mlbuild.files.layout import find_root

    return find_root()


def serve(
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 1,
    log_dir: Annotated[Path | None, typer.Option(
        "--log-dir", help="Prediction log directory (default: .mlbuild/predictions/NAME).")
    ] = None,
    log_max_mb: Annotated[float, typer.Option(
        "--log-max-mb", help="Rotate the prediction log past this size.")] = 64.0,
    max_body_mb: Annotated[float, typer.Option(
        "--max-body-mb", help="Refuse request bodies larger than this (413).")] = 16.0,
    follow: Annotated[bool | None, typer.Option(
        "--follow/--no-follow", help="Switch to the version the registry names next "
        "(default: on for NAME#STAGE).")] = None,
    follow_interval: Annotated[float, typer.Option(
        "--follow-interval", help="Seconds between registry checks (git fetch --tags).")
    ] = 30.0,
    canary: Annotated[str | None, typer.Option(
        "--canary", help="A candidate version (NAME#staging, ...) answering a share.")] = None,
    canary_percent: Annotated[float, typer.Option(
        "--canary-percent", help="The canary's share of requests, 0-100 (sticky per "
        "X-Request-Id).")] = 10.0,
    shadow: Annotated[str | None, typer.Option(
        "--shadow", help="A candidate version scoring a copy of every request, answering "
        "none.")] = None,
    export: Annotated[str | None, typer.Option(
        "--export", help="Write deployment files instead of serving: 'kserve' (an "
        "InferenceService manifest and the Dockerfile of its image).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Where --export writes.")] = Path("deploy"),
    image: Annotated[str | None, typer.Option(
        "--image", help="--export: the image repository (default: the model's name).")] = None,
) -> None:
    """Serve a model version over the Open Inference Protocol v2 and MLflow's /invocations."""
    from mlbuild.serve import server

    if export is not None:
        _export(export, ref, out, image, canary, canary_percent, shadow)
        return

    if not 1 <= workers <= 64:
        raise UsageError(f"--workers {workers}: expected 1 to 64")
    if not 0 < port < 65536 or log_max_mb <= 0 or max_body_mb <= 0:
        raise UsageError("--port must be 1..65535, --log-max-mb and --max-body-mb positive")
    following = ("#" in ref) if follow is None else follow
    if following and ("@" in ref or ref.endswith((".pkl", ".pickle", ".joblib"))):
        raise UsageError(f"--follow: '{ref}' names one fixed version; follow NAME#STAGE or "
                         "NAME (the version in 'prod', else the latest)")
    if following and follow_interval <= 0:
        raise UsageError("--follow-interval must be positive")
    root = _root()
    settings = _settings(root, ref, log_dir, log_max_mb, max_body_mb,
                         follow_interval if following else None,
                         _candidate(root, canary, canary_percent, shadow))
    typer.echo(_banner(settings, f"http://{host}:{port}"))
    sys.stdout.flush()
    stopped = server.run(settings, host, port, workers)
    why = f" ({stopped.signal})" if stopped.signal else ""
    typer.echo(f"stopped{why}: {stopped.logged} prediction(s) logged to {stopped.log_path}")


def _export(kind: str, ref: str, out: Path, image: str | None, canary: str | None,
            percent: float, shadow: str | None) -> None:
    """`serve --export kserve`: the same version (and canary) as KServe deployment files."""
    from mlbuild.serve.kserve import export_kserve

    if kind != "kserve":
        raise UsageError(f"--export {kind}: the one target is 'kserve'")
    if shadow:
        raise UsageError("--export kserve: an InferenceService splits traffic (--canary); it "
                         "has no shadow")
    if canary and percent != int(percent):
        raise UsageError(f"--canary-percent {percent:g}: KServe takes a whole percent")
    paths = export_kserve(_root(), ref, out, canary=canary,
                          canary_percent=int(percent) if canary else None, repository=image)
    for path in paths:
        typer.echo(f"wrote {path}")


def _settings(root: Path, ref: str, log_dir: Path | None, log_max_mb: float,
              max_body_mb: float, follow_interval: float | None, candidate: Candidate | None
              ) -> Settings:
    from mlbuild.serve import source
    from mlbuild.serve.predlog import default_dir
    from mlbuild.serve.service import Settings

    src = source.resolve(root, ref)
    logs = (log_dir or default_dir(root, src.name)).absolute()
    return Settings(root, src, logs, int(log_max_mb * MIB), int(max_body_mb * MIB), ref,
                    follow_interval, candidate)


def _banner(settings: Settings, where: str) -> str:
    """What is served, where it logs, what it follows and what runs beside it."""
    src, candidate = settings.source, settings.candidate
    followed = (f"; following {settings.ref} every {settings.follow_interval:g} s"
                if settings.follow_interval is not None else "")
    beside = "" if candidate is None else (
        f"; {candidate.role} {candidate.source.name} {candidate.source.version}"
        + (f" answering {candidate.percent:g}%" if candidate.role == "canary" else ""))
    return (f"serving {src.name} {src.version} (md5 {src.md5}) on {where}: /v2/models/"
            f"{src.name}/infer, /invocations, /metrics; prediction log in {settings.log_dir}"
            f"{followed}{beside}")


def _candidate(root: Path, canary: str | None, percent: float, shadow: str | None
               ) -> Candidate | None:
    """The canary or shadow version, resolved and fetched before the server starts."""
    from mlbuild.serve import source
    from mlbuild.serve.service import CANARY, SHADOW, Candidate

    if canary and shadow:
        raise UsageError("--canary and --shadow: choose one candidate version")
    if not 0 <= percent <= 100:
        raise UsageError(f"--canary-percent {percent:g}: expected 0 to 100")
    ref = canary or shadow
    if ref is None:
        return None
    return Candidate(source.resolve(root, ref), ref, CANARY if canary else SHADOW, percent)


def predict(
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="A .csv, .parquet or .jsonl "
                                             "file of feature rows.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the rows with "
                                         "a 'prediction' column (.csv, .parquet, .jsonl).")],
) -> None:
    """Score a file offline, every row checked against the model's input contract."""
    from mlbuild.serve import batch, source

    root = _root()
    scored = batch.score(root, source.resolve(root, ref), input_path, output)
    typer.echo(f"{scored.model} {scored.version}: scored {scored.rows} row(s) -> "
               f"{scored.output}")


def register(app: typer.Typer) -> None:
    """Add the serve and predict commands."""
    app.command("serve")(serve)
    app.command("predict")(predict)
