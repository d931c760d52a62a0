"""`mlbuild data ...`, `mlbuild pull`, `mlbuild push`, `mlbuild gc`: versioned data on DVC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from mlbuild.errors import EXIT_FAILED

data_app = typer.Typer(help="Track raw data and check the local cache.", no_args_is_help=True)
data_app.suggest_commands = False  # Click suggests the closest command (see mlbuild.cli)
RemoteOpt = Annotated[str | None, typer.Option("--remote", "-r",
                                               help="DVC remote name (default: core.remote).")]
TargetsArg = Annotated[list[str] | None, typer.Argument(
    metavar="[TARGET]...", help="Outputs or .dvc files (default: everything).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _root() -> Path:
    from mlbuild.files.layout import find_root

    return find_root()


@contextmanager
def _locked() -> Iterator[Path]:
    """The project root, with DVC's repository lock held (saying so while waiting for it):
    the data commands take the same lock inside, which is then already theirs."""
    from mlbuild.cli.build import waiting
    from mlbuild.engine.workspace import project_lock

    root = _root()
    with project_lock(root, on_wait=waiting):
        yield root


@data_app.command("add")
def add(paths: Annotated[list[str], typer.Argument(help="Files or directories to track.")]
        ) -> None:
    """Track raw data like `dvc add`, after checking its contracts: writes PATH.dvc, or updates
    the .dvc file that already tracks PATH (the example's data.dvc tracks data/raw)."""
    from mlbuild.data import ops as data

    with _locked() as root:
        added = data.add(root, paths)
    for dvcfile in added:
        typer.echo(f"tracked: {dvcfile} (commit it with git)")


@data_app.command("status")
def status(remote: RemoteOpt = None, json_out: JsonOpt = False) -> None:
    """What is missing locally or not yet pushed to the remote."""
    from mlbuild.data import ops as data

    result = data.status(_root(), remote)
    if json_out:
        typer.echo(json.dumps({"in_sync": not result, "paths": result}, indent=2))
        return
    labels = {"new": "not pushed", "deleted": "missing locally (pull it)",
              "missing": "missing locally and on the remote"}
    for path, state in sorted(result.items()):
        typer.echo(f"{labels.get(state, state):>36}  {path}")
    typer.echo("Data is in sync with the remote." if not result else
               f"{len(result)} path(s) out of sync.")


@data_app.command("fsck")
def fsck(repair: Annotated[bool, typer.Option(
    "--repair", help="Delete corrupted objects so a pull or build replaces them, and clean "
    "up what killed runs left.")] = False,
         json_out: JsonOpt = False) -> None:
    """Verify every object in the local cache against its hash; report what killed runs left
    (--repair also cleans it up)."""
    from mlbuild.data import ops as data

    with _locked() as root:
        result = data.check_cache(root, repair)
    total, bad = result.total, result.corrupt
    if json_out:
        typer.echo(json.dumps({"objects": total, "corrupt": [vars(b) for b in bad],
                               "repaired": repair, "restored": result.restored,
                               "leftovers": result.leftovers, "kept": result.kept}, indent=2))
    else:
        _leftovers(result.restored, result.leftovers, removed=repair, kept=result.kept)
        for item in bad:
            why = item.problem or f"expected md5 {item.expected}, found {item.actual}"
            typer.echo(f"corrupted: {item.path} ({why})" + (" - removed" if repair else ""))
        typer.echo(f"{total} object(s) checked, {len(bad)} corrupted.")
    if bad and not repair:
        raise typer.Exit(EXIT_FAILED)


def pull(targets: TargetsArg = None, remote: RemoteOpt = None) -> None:
    """Download data, stage outputs and the run-cache; verify them; check them out."""
    from mlbuild import api

    with _locked() as root:
        result = api.pull(root, targets or [], remote)
    typer.echo(f"pulled: {result.fetched} object(s) fetched, every needed object verified"
               + (f", {len(result.refetched)} damaged local cop(ies) replaced"
                  if result.refetched else "")
               + (f", {result.validated} contract(s) checked" if result.validated else ""))


def push(targets: TargetsArg = None, remote: RemoteOpt = None) -> None:
    """Upload data, stage outputs and the run-cache to the remote."""
    from mlbuild import api

    with _locked() as root:
        count = api.push(root, targets or [], remote)
    typer.echo(f"pushed: {count} object(s)")


def gc(
    force: Annotated[bool, typer.Option("--force", "-f",
                                        help="Really delete (default: dry run).")] = False,
    all_commits: Annotated[bool, typer.Option("--all-commits",
                                              help="Keep what any commit needs.")] = False,
    all_branches: Annotated[bool, typer.Option("--all-branches",
                                               help="Keep what any branch needs.")] = False,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Keep what any tag needs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove cache objects the workspace (and chosen revisions) do not use."""
    from mlbuild.data import ops as data

    with _locked() as root:
        plan = data.gc(root, force, all_commits, all_branches, all_tags)
    if json_out:
        typer.echo(json.dumps({"removed" if force else "would_remove": len(plan.remove),
                               "bytes": plan.size, "kept": plan.kept,
                               "paths": [str(p) for p in plan.remove],
                               "restored": plan.restored, "leftovers": plan.leftovers}, indent=2))
        return
    _leftovers(plan.restored, plan.leftovers, removed=force)
    import click

    verbose = bool(click.get_current_context().find_root().params.get("verbose"))
    verb = "removed" if force else "would remove"
    if verbose:
        for path, size in zip(plan.remove, plan.sizes, strict=True):
            typer.echo(f"{verb}: {path} ({size:,} bytes)")
    hint = "" if verbose or not plan.remove else "; -v lists them"
    typer.echo(f"gc: {verb} {len(plan.remove)} object(s), {plan.size:,} bytes; "
               f"kept {plan.kept}" + ("" if force else " (dry run: pass --force to delete)")
               + hint)


def _leftovers(restored: list[str], leftovers: list[str], removed: bool,
               kept: list[str] | None = None) -> None:
    """Report what killed runs left: backups put back, temporary files removed, outputs a
    later build made (or leading out of the project) left as they are."""
    if kept:
        typer.echo(f"leftovers of a killed run: left as they are: {', '.join(kept)}")
    if restored:
        verb = "put back" if removed else "would put back"
        typer.echo(f"leftovers of a killed run: {verb}: {', '.join(restored)}")
    if leftovers:
        verb = "removed" if removed else "would remove"
        typer.echo(f"leftovers of a killed run: {verb} {len(leftovers)} temporary file(s) or "
                   f"backup(s): {', '.join(leftovers[:3])}" + (" ..." if len(leftovers) > 3
                                                                else ""))


def register(app: typer.Typer) -> None:
    """Add the data commands."""
    app.add_typer(data_app, name="data")
    app.command("pull")(pull)
    app.command("push")(push)
    app.command("gc")(gc)
