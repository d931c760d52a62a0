"""The HTTP layer (FastAPI): the Open Inference Protocol v2 endpoints, MLflow's `/invocations`,
`/ping`, `/health`, `/version`, and `/metrics`. Errors are {"error": ...} with a 4xx status.

The two prediction routes are plain Starlette routes taking the Request: FastAPI's parameter
parsing and response validation cost more than a one-row prediction."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mlbuild import __version__
from mlbuild.serve import protocol
from mlbuild.serve.contract import ContractViolation
from mlbuild.serve.protocol import RequestError
from mlbuild.serve.service import CANARY, PRIMARY, Loaded, Service

JSON = "application/json"


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers, JSON)


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past *limit* bytes (before reading it when the
    client declares its length)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the body is {declared} bytes; the limit is {limit} "
                           "(--max-body-mb)", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the body is larger than the limit of {limit} bytes "
                               "(--max-body-mb)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


Decode = Callable[[bytes, Request, Loaded], tuple[Any, str | None]]
Encode = Callable[[Loaded, Any, str], dict[str, Any]]


def _decode_infer(body: bytes, _request: Request, loaded: Loaded) -> tuple[Any, str | None]:
    return protocol.decode_infer(body, loaded.names)


def _decode_invocations(body: bytes, request: Request, loaded: Loaded
                        ) -> tuple[Any, str | None]:
    ctype = request.headers.get("content-type", "")
    return protocol.decode_invocations(body, ctype, loaded.names), None


def _encode_infer(loaded: Loaded, predictions: Any, request_id: str) -> dict[str, Any]:
    return {"model_name": loaded.source.name, "model_version": loaded.source.version,
            "id": request_id, "outputs": [{
                "name": "predict", "shape": [len(predictions)],
                "datatype": protocol.oip_datatype(predictions),
                "data": protocol.plain(predictions)}]}


def _encode_invocations(loaded: Loaded, predictions: Any, _request_id: str) -> dict[str, Any]:
    return {"predictions": protocol.plain(predictions), "model_version": loaded.source.version}


class Routes:
    """The handlers, bound to one Service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.limit = service.settings.max_body

    def _loaded(self, name: str | None = None, version: str | None = None) -> Loaded:
        service = self.service
        loaded = service.current
        if name is not None and name != service.settings.source.name:
            raise RequestError(f"unknown model '{name}' (this server serves "
                               f"'{service.settings.source.name}')", 404)
        if loaded is None:
            raise RequestError("the model is still loading; retry when /v2/health/ready "
                               "answers 200", 503)
        if version is None or version == loaded.source.version:
            return loaded
        candidate, settings = service.candidate, service.settings.candidate
        if candidate is not None and settings is not None and settings.role == CANARY and \
                version == candidate.source.version:
            return candidate
        raise RequestError(f"model '{name}' has no version '{version}' here (serving "
                           f"{loaded.source.version})", 404)

    async def _answer(self, request: Request, endpoint: str, decode: Decode,
                      encode: Encode) -> Response:
        started = time.perf_counter()
        params = request.path_params
        service = self.service
        try:
            loaded = self._loaded(params.get("name"), params.get("version"))
            body = await _body(request, self.limit)
            frame, request_id = decode(body, request, loaded)
            request_id = request.headers.get("x-request-id") or request_id
            answering, role = service.route(loaded, request_id, "version" in params)
            predictions, request_id, checked = service.predict(
                answering, frame, request_id, endpoint, started, role)
        except RequestError as exc:
            service.metrics.refused(endpoint, exc.status, "request")
            return _error(str(exc), exc.status)
        except ContractViolation as exc:
            service.metrics.refused(endpoint, 400, exc.rule)
            return _error(str(exc), 400)
        except Exception as exc:  # a model that fails on checked input: the server's fault
            service.metrics.refused(endpoint, 500, "internal")
            return _error(f"internal error: {type(exc).__name__}: {exc}", 500)
        if service.shadows is not None:
            service.shadows.submit(checked, request_id, endpoint)
        return _json(encode(answering, predictions, request_id),
                     headers={"x-request-id": request_id,
                              "x-model-version": answering.source.version})

    async def infer(self, request: Request) -> Response:
        """POST /v2/models/{name}[/versions/{version}]/infer."""
        return await self._answer(request, "infer", _decode_infer, _encode_infer)

    async def invocations(self, request: Request) -> Response:
        """POST /invocations (MLflow's scoring protocol)."""
        return await self._answer(request, "invocations", _decode_invocations,
                                  _encode_invocations)

    def metadata(self, name: str, version: str | None = None) -> Response:
        """The model's OIP metadata: its inputs from the input contract."""
        try:
            loaded = self._loaded(name, version)
        except RequestError as exc:
            return _error(str(exc), exc.status)
        inputs = [{"name": f.name, "datatype": f.datatype, "shape": [-1]}
                  for f in loaded.contract.features]
        return _json({"name": loaded.source.name, "versions": [loaded.source.version],
                      "platform": type(loaded.model).__module__.split(".")[0],
                      "inputs": inputs,
                      "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
                      "parameters": {"content_type": "pd", "contract": loaded.contract.source,
                                     "tensor_columns": loaded.names}})

    def model_ready(self, name: str, version: str | None = None) -> Response:
        """GET .../ready: 200 once loaded, 503 before, 404 for another model or version."""
        try:
            self._loaded(name, version)
        except RequestError as exc:
            return _json({"name": name, "ready": False, "error": str(exc)}, exc.status)
        return _json({"name": name, "ready": True})

    def ready(self) -> Response:
        """GET /v2/health/ready."""
        ready = self.service.current is not None
        return _json({"ready": ready}, 200 if ready else 503)

    def metrics(self) -> Response:
        """GET /metrics (Prometheus text format)."""
        service = self.service
        settings = service.settings.candidate
        loaded = [(service.current, PRIMARY), (service.candidate, settings and settings.role)]
        paths = [(ld.source.version, str(role), ld.predict.path, ld.predict.compile_state)
                 for ld, role in loaded if ld is not None and ld.predict is not None]
        body, ctype = service.metrics.exposition(service.log.failed if service.log else 0,
                                                 paths)
        return Response(body, 200, media_type=ctype)


def _mlflow_routes(app: FastAPI, routes: Routes) -> None:
    def ping() -> Response:
        """MLflow's /ping and /health: 200 once the model is loaded."""
        ready = routes.service.current is not None
        return Response(b"\n" if ready else b"loading\n", 200 if ready else 503,
                        media_type="text/plain")

    app.add_api_route("/ping", ping, methods=["GET"])
    app.add_api_route("/health", ping, methods=["GET"])
    app.add_api_route("/version", lambda: Response(__version__, media_type="text/plain"),
                      methods=["GET"])
    app.add_route("/invocations", routes.invocations, methods=["POST"])


def _oip_routes(app: FastAPI, routes: Routes) -> None:
    app.add_api_route("/v2", lambda: _json({"name": "mlbuild", "version": __version__,
                                            "extensions": []}), methods=["GET"])
    app.add_api_route("/v2/health/live", lambda: _json({"live": True}), methods=["GET"])
    app.add_api_route("/v2/health/ready", routes.ready, methods=["GET"])
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_api_route(prefix, routes.metadata, methods=["GET"])
        app.add_api_route(prefix + "/ready", routes.model_ready, methods=["GET"])
        app.add_route(prefix + "/infer", routes.infer, methods=["POST"])


def create_app(service: Service, on_failure: Callable[[], None]) -> FastAPI:
    """The ASGI app: the model loads when the server starts, the log flushes when it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.open(on_failure)
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="mlbuild serve", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    routes = Routes(service)
    _oip_routes(app, routes)
    _mlflow_routes(app, routes)
    app.add_api_route("/metrics", routes.metrics, methods=["GET"])
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    return app


async def _not_found(request: Request, _exc: Exception) -> Response:
    return _error(f"no such endpoint: {request.method} {request.url.path}", 404)


async def _not_allowed(request: Request, _exc: Exception) -> Response:
    return _error(f"{request.method} is not allowed on {request.url.path}", 405)
