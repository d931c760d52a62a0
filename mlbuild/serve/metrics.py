"""Prometheus metrics of one server: requests, errors, latency and the model version serving,
on a registry of its own (not the process-global one)."""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The counters and histograms `/metrics` exposes."""

    def __init__(self, model: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.model = model
        self.registry = CollectorRegistry()
        self.requests = Counter("mlbuild_serve_requests", "Prediction requests answered.",
                                ["endpoint", "model_version", "role"], registry=self.registry)
        self.rows = Counter("mlbuild_serve_rows", "Rows scored.", ["model_version", "role"],
                            registry=self.registry)
        self.errors = Counter("mlbuild_serve_errors", "Requests refused or failed.",
                              ["endpoint", "status", "rule"], registry=self.registry)
        self.latency = Histogram("mlbuild_serve_request_latency_seconds",
                                 "Time from the body read to the answer.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.version = Gauge("mlbuild_serve_model_version_info",
                             "1 for each model version loaded, by role.",
                             ["model", "model_version", "role"], registry=self.registry)
        self.log_lost = Gauge("mlbuild_serve_prediction_log_lost",
                              "Prediction log entries a write error lost.",
                              registry=self.registry)
        self.follow_failures = Counter(
            "mlbuild_serve_follow_failures", "Registry checks that did not switch: the tags "
            "could not be fetched, the reference not resolved, or the version not loaded.",
            ["model_version", "reason"], registry=self.registry)
        self.predict_path = Gauge(
            "mlbuild_serve_predict_path_info", "1 for how each loaded version computes its "
            "answers: path 'compiled' (LightGBM trees as machine code), 'booster' (LightGBM on "
            "arrays) or 'model' (its own predict()); compile: where compiling its trees stands.",
            ["model_version", "role", "path", "compile"], registry=self.registry)
        self._children: dict[tuple[str, ...], Any] = {}

    def loaded(self, version: str, role: str) -> None:
        """Record that *version* serves in *role* (answered, canary, shadow)."""
        self.version.labels(self.model, version, role).set(1)

    def unloaded(self, version: str, role: str) -> None:
        """Record that *version* no longer serves in *role*."""
        self.version.labels(self.model, version, role).set(0)

    def follow_failed(self, version: str, reason: str) -> None:
        """Count a registry check that could not fetch, resolve or load *version*."""
        self.follow_failures.labels(version, reason).inc()

    def answered(self, endpoint: str, version: str, role: str, rows: int,
                 seconds: float) -> None:
        """Count one answered request (label children cached: labels() costs a lookup)."""
        key = (endpoint, version, role)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key),
                                               self.rows.labels(version, role),
                                               self.latency.labels(endpoint))
        children[0].inc()
        children[1].inc(rows)
        children[2].observe(seconds)

    def refused(self, endpoint: str, status: int, rule: str) -> None:
        """Count one refused or failed request."""
        self.errors.labels(endpoint, str(status), rule).inc()

    def exposition(self, lost: int, paths: list[tuple[str, str, str, str]]
                   ) -> tuple[bytes, str]:
        """The text format and its content type; *paths*: (version, role, path, compile
        state) of each loaded version."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.log_lost.set(lost)
        self.predict_path.clear()
        for labels in paths:
            self.predict_path.labels(*labels).set(1)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
