"""Several worker processes on one listening socket (`serve --workers N`): the parent binds,
forks, forwards stop signals and reports; each worker loads the model itself and writes its
own prediction log (<log dir>/worker-<k>/) and accepts connections only once its model is
loaded. /metrics answers for the worker that took the scrape."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace

from mlbuild.errors import EXIT_INTERNAL, MlbuildError, UsageError
from mlbuild.serve.server import STOP_SIGNALS, Stopped
from mlbuild.serve.service import Settings

Serve = Callable[[Settings, socket.socket], Stopped]


def _child(settings: Settings, sock: socket.socket, serve: Serve, k: int, report: int) -> None:
    """A worker: serve, write how it ended to the *report* pipe, and exit (never return)."""
    for signum in STOP_SIGNALS:  # the parent's forwarding handler is not this process's
        signal.signal(signum, signal.SIG_DFL)
    outcome: dict[str, object]
    try:
        mine = replace(settings, log_dir=settings.log_dir / f"worker-{k}", load_first=True)
        stopped = serve(mine, sock)
        for signum in STOP_SIGNALS:  # stopped: another signal must not lose the report
            signal.signal(signum, signal.SIG_IGN)
        outcome = {"logged": stopped.logged, "signal": stopped.signal}
    except MlbuildError as exc:
        outcome = {"error": str(exc), "code": exc.exit_code}
    except BaseException as exc:  # reported by the parent as an internal error
        outcome = {"error": f"{type(exc).__name__}: {exc}", "code": EXIT_INTERNAL}
    with contextlib.suppress(OSError):
        os.write(report, json.dumps(outcome).encode())
    os._exit(0)


def prefork(settings: Settings, sock: socket.socket, workers: int, serve: Serve) -> Stopped:
    """Fork *workers* servers on *sock*, wait for all of them; the first worker error is
    raised, after every worker has stopped."""
    reads, pids = [], []
    for k in range(workers):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _child(settings, sock, serve, k, write)
        os.close(write)
        reads.append(read)
        pids.append(pid)
    caught: list[int] = []
    signalled: set[int] = set()

    def stop_all() -> None:
        """SIGTERM to each worker, once: a worker signalled again after it had stopped
        serving died of the signal before it reported what it logged."""
        for pid in pids:
            if pid not in signalled:
                signalled.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def forward(signum: int, _frame: object) -> None:
        caught.append(signum)
        stop_all()

    before = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        os.wait()  # the first worker to end (a stop signal or a load error) ends them all
        stop_all()
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        outcomes = [_outcome(read) for read in reads]
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    return _summary(outcomes, caught, settings)


def _outcome(read: int) -> dict[str, object]:
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    try:
        doc = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


def _summary(outcomes: list[dict[str, object]], caught: list[int], settings: Settings
             ) -> Stopped:
    failed = next((o for o in outcomes if "error" in o), None)
    if failed is not None:
        error = UsageError(str(failed["error"]))
        error.exit_code = int(str(failed["code"]))
        raise error
    logged = sum(int(str(o.get("logged", 0))) for o in outcomes)
    name = signal.Signals(caught[0]).name if caught else None
    return Stopped(name, logged, str(settings.log_dir / "worker-*"))
