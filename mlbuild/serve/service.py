"""The model a server answers from: loaded once in the background (the server says "not ready"
until then), every frame checked against its input contract before the model sees it, every
answer counted and logged."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.serve.metrics import Metrics
from mlbuild.serve.predlog import Entry, PredictionLog
from mlbuild.serve.source import Source, load


@dataclass(frozen=True)
class Loaded:
    """A model version ready to answer: the unpickled model and its input contract."""

    source: Source
    model: Any
    contract: Any  # mlbuild.serve.contract.InputContract

    @property
    def names(self) -> list[str]:
        """The feature columns, in the order a tensor's columns are read."""
        names: list[str] = self.contract.names
        return names


@dataclass(frozen=True)
class Settings:
    """What `mlbuild serve` was asked for."""

    root: Path
    source: Source
    log_dir: Path
    log_max_bytes: int
    max_body: int
    ref: str = ""  # what the user named, resolved again when following
    follow_interval: float | None = None  # seconds between registry checks; None: no follow


def load_version(root: Path, source: Source) -> Loaded:
    """Unpickle a version and derive its input contract (ConfigError when it has none)."""
    from mlbuild.serve.contract import input_contract

    model = load(root, source)
    if not callable(getattr(model, "predict", None)):
        from mlbuild.errors import UsageError

        raise UsageError(f"model '{source.name}' {source.version}: the pickled "
                         f"{type(model).__name__} has no predict() method")
    return Loaded(source, model, input_contract(root, source.name, source.commit, model))


class Service:
    """The serving state shared by every request of one server process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: Loaded | None = None  # swapped as one reference: requests never mix
        self.error: BaseException | None = None
        self.metrics = Metrics(settings.source.name)
        self.log: PredictionLog | None = None
        self.follower: Any = None  # mlbuild.serve.follow.Follower, when following

    def open(self, on_failure: Callable[[], None]) -> None:
        """Start the prediction log and load the model on a thread; *on_failure* is called
        (from that thread) when the model cannot be loaded."""
        self.log = PredictionLog(self.settings.log_dir, self.settings.log_max_bytes)

        def run() -> None:
            try:
                loaded = load_version(self.settings.root, self.settings.source)
            except BaseException as exc:  # reported by the CLI once the server has stopped
                self.error = exc
                on_failure()
                return
            self.switch(loaded)
            self._follow()

        threading.Thread(target=run, name="model-load", daemon=True).start()

    def _follow(self) -> None:
        interval = self.settings.follow_interval
        if interval is not None:
            from mlbuild.serve.follow import Follower

            self.follower = Follower(self, self.settings.ref, interval)
            self.follower.start()

    def switch(self, loaded: Loaded) -> None:
        """Answer from *loaded* from the next request on (one reference assignment: a request
        in flight finishes with the version it started with)."""
        before, self.current = self.current, loaded
        if before is not None:
            self.metrics.unloaded(before.source.version, "answered")
        self.metrics.loaded(loaded.source.version, "answered")

    def close(self) -> None:
        """Stop following, then flush the prediction log (after the last in-flight request
        has been answered)."""
        if self.follower is not None:
            self.follower.stop()
        if self.log is not None:
            self.log.close()

    def predict(self, loaded: Loaded, frame: Any, request_id: str | None, endpoint: str,
                started: float) -> tuple[Any, str]:
        """Check *frame* against the contract, predict, count and log; (predictions, request
        id). ContractViolation for a frame the contract refuses."""
        import numpy as np

        checked = loaded.contract.check(frame)
        predictions = np.asarray(loaded.model.predict(checked))
        seconds = time.perf_counter() - started
        version = loaded.source.version
        request_id = request_id or uuid.uuid4().hex
        self.metrics.answered(endpoint, version, "answered", len(predictions), seconds)
        if self.log is not None:
            self.log.add(Entry(time.time(), request_id, loaded.source.name, version, "answered",
                               loaded.names, checked.to_numpy(), predictions, seconds * 1000))
        return predictions, request_id
