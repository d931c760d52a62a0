"""Running the app under uvicorn: the port bound first (a taken port is the user's error, not a
traceback), SIGTERM and SIGINT answered by finishing the requests in flight and flushing the
prediction log, and a model that fails to load ending the server with its error."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from mlbuild.errors import UsageError
from mlbuild.serve.service import Service, Settings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 30  # the longest shutdown waits for requests in flight


@dataclass(frozen=True)
class Stopped:
    """How a server ended."""

    signal: str | None  # the signal that stopped it, if one did
    logged: int  # prediction log entries written
    log_path: str


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; a taken port or a bad address is a UsageError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use (another server?); "
                             "stop it or choose another with --port") from exc
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a stop signal is not raised again once it has stopped:
        the CLI reports a clean stop instead of dying of the signal."""

        caught: list[int]

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            self.caught = []
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def on_signal(signum: int, frame: object) -> None:
                self.caught.append(signum)
                self.handle_exit(signum, None)

            before = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
            try:
                yield
            finally:
                for signum, handler in before.items():
                    signal.signal(signum, handler)

    return Server


def run(settings: Settings, host: str, port: int, workers: int = 1) -> Stopped:
    """Serve until a stop signal; raise the model's load error if it could not be loaded."""
    sock = bind(host, port)
    try:
        if workers == 1:
            return _serve(settings, sock)
        from mlbuild.serve.workers import prefork

        return prefork(settings, sock, workers, _serve)
    finally:
        sock.close()


def _serve(settings: Settings, sock: socket.socket) -> Stopped:
    """One server process on a bound socket."""
    import uvicorn

    from mlbuild.serve.app import create_app

    service = Service(settings)
    holder: list[object] = []

    def stop() -> None:  # called from the loading thread
        if holder:
            holder[0].should_exit = True  # type: ignore[attr-defined]

    config = uvicorn.Config(create_app(service, stop), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=GRACE_SECONDS, server_header=False,
                            lifespan="on")
    server = _server_class()(config)
    holder.append(server)
    server.run(sockets=[sock])
    if service.error is not None:
        raise service.error
    caught = getattr(server, "caught", [])
    log = service.log
    return Stopped(signal.Signals(caught[0]).name if caught else None,
                   log.written if log else 0, str(log.path) if log else "")


def run_app(app: object, sock: socket.socket) -> str | None:
    """Any ASGI application (the dashboard's) on a bound socket until a stop signal, which
    ends it cleanly; the signal's name, None if it stopped otherwise."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False,  # type: ignore[arg-type]
                            timeout_graceful_shutdown=GRACE_SECONDS, server_header=False,
                            lifespan="off")
    server = _server_class()(config)
    server.run(sockets=[sock])
    caught = getattr(server, "caught", [])
    return signal.Signals(caught[0]).name if caught else None
