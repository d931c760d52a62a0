"""`mlbuild ui`: the local, read-only web dashboard."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on (default: this machine only).")] = "127.0.0.1",
) -> None:
    """A read-only web dashboard: pipeline, runs, experiments, registry, drift."""
    from mlbuild.files.layout import find_root
    from mlbuild.ui import server

    root = find_root()
    server.check_address(host, port)
    shown = f"[{host}]" if ":" in host else host

    def ready() -> None:
        typer.echo(f"dashboard of {root} on http://{shown}:{port}/ (read-only; Ctrl-C "
                   "or SIGTERM stops it)")
        sys.stdout.flush()

    stopped = server.run(root, host, port, ready)
    typer.echo(f"stopped{f' ({stopped})' if stopped else ''}")


def register(app: typer.Typer) -> None:
    """Add the ui command."""
    app.command("ui")(ui)
