"""The dashboard's web application: one GET route per page (and per page's raw files), every
answer computed afresh from the project on disk, nothing ever written by a request."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlbuild.errors import MlbuildError
from mlbuild.ui.layout import note, page
from mlbuild.ui.pages import BadQueryError, Page, pages

ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" '
        'height="16" rx="3" fill="#263238"/><path d="M3 12V4l5 5 5-5v8" fill="none" '
        'stroke="#4fc3f7" stroke-width="2"/></svg>')


def render(root: Path, chosen: Page, every: list[Page], query: Mapping[str, str]
           ) -> tuple[str, int]:
    """(the page's HTML, HTTP status): a project error is shown on the page itself."""
    nav = [(p.path, p.title) for p in every]
    try:
        body, status = chosen.render(root, query), 200
    except BadQueryError as exc:
        body, status = note(str(exc), error=True), 400
    except MlbuildError as exc:  # the project's state (no dvc.yaml yet, ...): said on the page
        body, status = note(str(exc), error=True), 200
    except Exception as exc:  # a bug: said on the page too, the server stays up
        body, status = note(f"internal error: {type(exc).__name__}: {exc}", error=True), 500
    return page(chosen.title, body, nav, chosen.path, str(root)), status


def create_app(root: Path) -> Any:
    """The FastAPI application over the project at *root*."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, Response

    app = FastAPI(title="mlbuild ui", docs_url=None, redoc_url=None, openapi_url=None)
    every = pages()
    lock = threading.Lock()  # one page at a time: the status check keeps a stat cache
    for chosen in every:
        # Starlette's plain routes: the handlers take the request, FastAPI inspects nothing
        app.add_route(chosen.path, _page_handler(root, chosen, every, lock), methods=["GET"])
        if chosen.raw is not None:
            app.add_route(chosen.path.rstrip("/") + "/{name:path}",
                          _raw_handler(root, chosen, every, lock), methods=["GET"])

    def icon(_request: Request) -> Response:
        return Response(ICON, media_type="image/svg+xml")

    # pages served as they are (a monitor report) have no icon link: browsers ask for this
    app.add_route("/favicon.ico", icon, methods=["GET"])

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> HTMLResponse:
        return HTMLResponse(_missing(every, request.url.path), 404)

    return app


def _page_handler(root: Path, chosen: Page, every: list[Page], lock: threading.Lock) -> Any:
    from fastapi.responses import HTMLResponse

    def show(request: Any) -> HTMLResponse:
        with lock:
            text, status = render(root, chosen, every, dict(request.query_params))
        return HTMLResponse(text, status)
    return show


def _raw_handler(root: Path, chosen: Page, every: list[Page], lock: threading.Lock) -> Any:
    from fastapi.responses import HTMLResponse, Response

    def get(request: Any) -> Response:
        assert chosen.raw is not None
        name = str(request.path_params["name"])
        with lock:
            found = chosen.raw(root, name)
        if found is None:
            return HTMLResponse(_missing(every, f"{chosen.path}/{name}"), 404)
        return Response(found[0], media_type=found[1])
    return get


def _missing(every: list[Page], path: str) -> str:
    nav = [(p.path, p.title) for p in every]
    return page("Not found", note(f"no page at {path}; the pages are: "
                                  + ", ".join(p for p, _ in nav)), nav, "")
