"""Shadow traffic: a copy of every answered request scored by the shadow version on a thread
of its own, logged and counted with the role "shadow", never returned and never delaying the
answer. (The canary's split is Service.route: it answers, so it runs in the request.)"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from mlbuild.errors import UsageError

if TYPE_CHECKING:
    from mlbuild.serve.service import Service

BACKLOG = 1000  # copies waiting for the shadow; past it a copy is dropped (and counted)
_STOP = object()


class Shadows:
    """The shadow's queue and its worker thread."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._queue: queue.Queue[Any] = queue.Queue(BACKLOG)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def submit(self, frame: Any, request_id: str, endpoint: str) -> None:
        """Queue a copy of an answered request (never blocks)."""
        try:
            self._queue.put_nowait((frame, request_id, endpoint))
        except queue.Full:
            self.service.metrics.refused(endpoint + ":shadow", 503, "backlog")

    def close(self) -> None:
        """Score every queued copy, then stop."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        from mlbuild.serve.service import SHADOW

        while (item := self._queue.get()) is not _STOP:
            frame, request_id, endpoint = item
            shadow = self.service.candidate
            if shadow is None:
                continue
            try:
                self.service.predict(shadow, frame, request_id, endpoint, time.perf_counter(),
                                     SHADOW)
            except UsageError as exc:  # its contract refuses what the serving one took
                self.service.metrics.refused(endpoint + ":shadow", 400,
                                             getattr(exc, "rule", "request"))
            except Exception:  # a failing shadow never touches the answers
                self.service.metrics.refused(endpoint + ":shadow", 500, "internal")
