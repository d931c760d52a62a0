"""Running the dashboard: the port bound first (a taken port is the user's error, in one line),
then uvicorn until SIGTERM or SIGINT, which end it cleanly; serve's machinery, reused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlbuild.errors import UsageError


def check_address(host: str, port: int) -> None:
    """A port out of range is the user's mistake."""
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: expected 1 to 65535")
    if not host.strip():
        raise UsageError("--host: expected an address such as 127.0.0.1")


def run(root: Path, host: str, port: int, ready: Callable[[], None] | None = None
        ) -> str | None:
    """Serve the dashboard of *root* until a stop signal; that signal's name. *ready*, when
    given, is called once the port is bound (the CLI prints where to look)."""
    from mlbuild.serve.server import bind, run_app
    from mlbuild.ui.app import create_app

    check_address(host, port)
    sock = bind(host, port)
    try:
        app = create_app(root)
        if ready is not None:
            ready()
        return run_app(app, sock)
    finally:
        sock.close()
