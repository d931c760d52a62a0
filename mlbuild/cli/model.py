"""`mlbuild model register|promote|rollback|list|history|get|push`: the model registry, as
GTO-format git tags, with promotion gates."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from mlbuild.errors import CheckFailedError

model_app = typer.Typer(no_args_is_help=True,
                        help="The model registry: versions, stages, gates, rollback.")


class Bump(StrEnum):
    """Which part of the latest version a new one increments."""

    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


def _root() -> Path:
    from mlbuild.files.layout import find_root

    return find_root()


def _when(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


@model_app.command("register")
def register_version(
    name: Annotated[str, typer.Argument(help="The artifact, as dvc.yaml's artifacts: names it.")],
    version: Annotated[str | None, typer.Option("--version", help="vX.Y.Z")] = None,
    bump: Annotated[Bump | None, typer.Option(
        "--bump", help="Increment the latest version's part (default: patch).")] = None,
) -> None:
    """Register the current commit as a new version of a model (a GTO tag NAME@vX.Y.Z)."""
    from mlbuild.registry import ops

    outcome = ops.register(_root(), name, version, bump.value if bump else None)
    typer.echo(f"registered {outcome.model} {outcome.version} (tag {outcome.tag})")


def _print_report(report: Any) -> None:
    verdict = "passed" if report.passed else "FAILED"
    typer.echo(f"gate {report.model}@{report.version} -> {report.stage}: {verdict}")
    for check in report.checks:
        typer.echo(f"  {'pass' if check.passed else 'FAIL'}  {check.check}: {check.detail}")


@model_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[str, typer.Argument(help="The version to promote, vX.Y.Z.")],
    to: Annotated[str, typer.Option("--to", help="The stage: dev, staging, prod, ...")],
    verify: Annotated[bool, typer.Option(
        "--verify", help="Run 'mlbuild verify' on this commit first (it must be HEAD).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Assign the stage even if the gate fails (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Assign a stage to a version once its promotion gate passes."""
    from mlbuild.registry import ops

    root = _root()
    if verify:
        _verify_first(root, name, version, quiet=json_out)
    outcome = ops.promote(root, name, version, to, force, reason)
    assert outcome.report is not None
    if json_out:
        typer.echo(json.dumps({"model": name, "version": outcome.version, "stage": to,
                               "tag": outcome.tag, "replaced": outcome.replaced,
                               "forced": outcome.forced, "gate": outcome.report.to_doc()},
                              indent=2))
    else:
        _print_report(outcome.report)
    if outcome.tag is None:
        failed = sum(not c.passed for c in outcome.report.checks)
        raise CheckFailedError(
            f"promotion of {name} {outcome.version} to '{to}' refused by its gate ({failed} "
            "check(s) failed); nothing changed (override: --force --reason TEXT)")
    if json_out:
        return
    forced = " (gate overridden: recorded with the reason)" if outcome.forced else ""
    before = f", replacing {outcome.replaced}" if outcome.replaced else ""
    typer.echo(f"{name} {outcome.version} -> {to}{before} (tag {outcome.tag}){forced}")


def _verify_first(root: Path, name: str, version: str, quiet: bool) -> None:
    from mlbuild import api
    from mlbuild.errors import UsageError
    from mlbuild.registry import checks, ops
    from mlbuild.registry.state import Registry

    event = Registry.read(root).versions(name).get(ops.normalise(version))
    if event is not None and event.commit != checks.head(root):
        raise UsageError(f"--verify rebuilds HEAD, but {name} {version} is commit "
                         f"{event.commit[:12]}; check it out first, or run 'mlbuild verify' "
                         "there")
    report = api.verify(root, [], jobs=1)
    if not quiet:
        typer.echo(f"verify: {'ok' if report.ok else 'DIFFERENT'}")


@model_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="The model.")],
    stage: Annotated[str, typer.Option("--stage", help="The stage to roll back.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    to: Annotated[str | None, typer.Option(
        "--to", help="The version to put back (default: the one before).")] = None,
) -> None:
    """Put back the previous version of a stage (or --to VERSION), as a new assignment."""
    from mlbuild.registry import ops

    outcome = ops.rollback(_root(), name, stage, to, reason)
    typer.echo(f"{name} {stage}: {outcome.replaced} -> {outcome.version} (rollback, tag "
               f"{outcome.tag})")


@model_app.command("list")
def list_models(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                ) -> None:
    """Every model, its latest version and the version holding each stage."""
    from mlbuild.registry.evidence import declared
    from mlbuild.registry.state import Registry

    root = _root()
    registry = Registry.read(root)
    names = sorted(set(declared(root)) | set(registry.names()))
    rows: list[dict[str, Any]] = [
        {"model": n, "latest": registry.latest(n), "stages": registry.stages(n)} for n in names]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no models declared or registered")
    for row in rows:
        held = ", ".join(f"{s}={v}" for s, v in row["stages"].items()) or "no stage"
        typer.echo(f"{row['model']}  latest {row['latest'] or '-'}  {held}")


@model_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="The model.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every registration, promotion, override and rollback of a model."""
    from mlbuild.registry.state import Registry

    root = _root()
    entries = Registry.read(root).history(name)
    if not entries:
        from mlbuild.registry.evidence import artifact_path

        artifact_path(root, name)  # an unknown model: exit 2 with the closest name
    if json_out:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    for e in entries:
        what = f"{e.action} {e.version or '-'}" + (f" -> {e.stage}" if e.stage else "")
        gate = "" if e.gate is None else (" gate passed" if e.gate.get("passed")
                                          else " gate FAILED")
        forced = " FORCED" if e.forced else ""
        why = f" reason: {e.reason}" if e.reason else ""
        typer.echo(f"{_when(e.time)}  {what}  by {e.who}  commit {e.commit[:7]}"
                   f"{gate}{forced}{why}  ({e.tag})")


@model_app.command("get")
def get(
    ref: Annotated[str, typer.Argument(help="NAME@vX.Y.Z, NAME@latest or NAME#STAGE.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Where to write it.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
) -> None:
    """Fetch a version's artifact from the cache or the DVC remote, verified by its hash."""
    from mlbuild.registry import fetch

    got = fetch.get(_root(), ref, out, force)
    typer.echo(f"{got.model} {got.version}: wrote {got.path} (md5 {got.md5}"
               f"{f', {got.fetched} object(s) from the remote' if got.fetched else ''})")


@model_app.command("push")
def push(remote: Annotated[str, typer.Argument(help="The git remote.")] = "origin") -> None:
    """Push the registry's tags (and any artifact the DVC remote lacks) to a git remote."""
    from mlbuild.registry import fetch

    names = fetch.push(_root(), remote)
    typer.echo(f"pushed {len(names)} registry tag(s) to {remote}")


@model_app.command("fetch")
def fetch_shared(remote: Annotated[str, typer.Argument(help="The git remote.")] = "origin"
                 ) -> None:
    """Fetch the registry's tags and merge the team's shared findings (refused gates, drift,
    verify verdicts) from a git remote; nothing is sent."""
    from mlbuild.registry import fetch

    tags, merged = fetch.pull_shared(_root(), remote)
    typer.echo(f"{tags} registry tag(s) known; shared findings "
               + ("merged" if merged else f"none on {remote}"))


def register(app: typer.Typer) -> None:
    """Add the model command group."""
    app.add_typer(model_app, name="model")
