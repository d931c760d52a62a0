"""Following the registry (`serve --follow`): on an interval, fetch the git remote's tags, resolve
the reference again and, when it names another version, load that version beside the one
serving and switch to it in one assignment. A version that fails to load is not switched to
(and not retried until the registry names yet another one)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mlbuild.errors import MlbuildError
from mlbuild.gitrepo import GitError, git

if TYPE_CHECKING:
    from mlbuild.serve.service import Service


def fetch_tags(root: Path) -> bool:
    """`git fetch --tags` from origin (else the first remote); False when it failed."""
    try:
        remotes = git(root, "remote").decode().split()
        if remotes:
            remote = "origin" if "origin" in remotes else remotes[0]
            git(root, "fetch", "--quiet", "--tags", remote)
    except GitError:
        return False
    return True


class Follower:
    """A thread that keeps a Service on the version its reference names."""

    def __init__(self, service: Service, ref: str, interval: float, role: str) -> None:
        self.service = service
        self.ref = ref
        self.role = role  # which of the service's versions this one keeps current
        self.interval = interval
        self.refused: set[str] = set()  # versions that failed to load
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{role}", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (a load under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """One check: switch when the reference names a new, loadable version."""
        from mlbuild.serve.service import load_version
        from mlbuild.serve.source import fetch_version, pick

        root, metrics = self.service.settings.root, self.service.metrics
        if not fetch_tags(root):
            metrics.follow_failed("-", "fetch")
        try:
            name, version, stage = pick(root, self.ref)
        except MlbuildError:  # the stage lost its holder: keep serving what we have
            metrics.follow_failed("-", "resolve")
            return
        current = self.service.loaded(self.role)
        if current is not None and current.source.version == version:
            return
        if version in self.refused:
            return
        try:
            loaded = load_version(root, fetch_version(root, name, version, stage), True)
        except Exception:  # any failure: keep answering from the version that works
            self.refused.add(version)
            metrics.follow_failed(version, "load")
            return
        self.service.switch(loaded, self.role)
