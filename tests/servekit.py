"""Helpers for the serving tests: a registered copy of the built example, a real `mlbuild serve`
process on a free localhost port, and plain HTTP requests to it (urllib, no client library)."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import Project, copy_tree, locked

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _register(built: Path, dest: Path) -> None:
    """*dest*: a copy of the built example, committed, pushed, model v0.0.1 registered."""
    copy_tree(built, dest)
    proj = Project(dest)
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built")
    for args in (("push",), ("model", "register", "model")):
        proc = proj.run(*args)
        assert proc.returncode == 0, proc.stderr


def registered_example(built: Path, dest: Path) -> Project:
    """A copy of the built example, committed, pushed to its DVC remote (inside it), model
    v0.0.1 registered: a private copy of one registered once per test run beside *built*
    (the build's shared directory), as the build itself is done once and copied."""
    template = built.parent / "registered"
    done = built.parent / "registered.done"  # written last: a half-made template is redone
    with locked(built.parent / "registered.lock"):
        if not done.exists():
            shutil.rmtree(template, ignore_errors=True)
            _register(built, template)
            done.touch()
    copy_tree(template, dest)
    return Project(dest)


class Server:
    """A `mlbuild serve` process and requests to it."""

    def __init__(self, proj: Project, *args: str) -> None:
        self.port = free_port()
        self.proj = proj
        self.proc = proj.start("serve", *args, "--port", str(self.port))

    def url(self, path: str) -> str:
        """The full URL of *path* on this server."""
        return f"http://{HOST}:{self.port}{path}"

    def request(self, path: str, body: bytes | None = None, ctype: str = "application/json",
                headers: dict[str, str] | None = None, timeout: float = 60
                ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of a GET (no body) or POST."""
        req = urllib.request.Request(self.url(path), data=body, headers={
            **({"Content-Type": ctype} if body is not None else {}), **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, kind = resp.status, resp.read(), resp.headers.get_content_type()
        except urllib.error.HTTPError as err:
            status, raw, kind = err.code, err.read(), err.headers.get_content_type()
        return status, json.loads(raw) if kind == "application/json" else raw.decode()

    def post(self, path: str, doc: Any, headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
        """POST a JSON document."""
        return self.request(path, json.dumps(doc).encode(), headers=headers)

    def wait(self, path: str = "/v2/health/ready", status: int = 200,
             timeout: float = 120) -> None:
        """Poll *path* until it answers *status* (the process must stay alive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                if self.request(path, timeout=5)[0] == status:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {status}")

    def stop(self) -> subprocess.CompletedProcess[str]:
        """SIGTERM, then wait for the process; its output."""
        if self.proc.poll() is None:
            self.proc.terminate()
        out, err = self.proc.communicate(timeout=120)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def raw_rows(proj: Project, n: int) -> tuple[list[str], list[list[int]]]:
    """The first *n* rows of the example's raw test set (columns, rows)."""
    with open(proj.path / "data/raw/test.csv", newline="") as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        return columns, [[int(v) for v in row] for _, row in zip(range(n), reader,
                                                                    strict=False)]
