"""`mlbuild ui`: a local, read-only web dashboard over every layer: the pipeline graph with
each stage's status, recent runs, experiments with plots, the registry with its gate reports,
drift reports. Pages are rendered on the server as HTML with inline CSS and inline SVG (no
JavaScript, nothing fetched from the network), each computed afresh on every request from the
project on disk, by the same code the matching CLI command uses.

Owns: the web app (app.py), its server (server.py), the page shell and navigation (layout.py),
the SVG renderers (svg.py: a layered graph; line, point and bar charts) and the pages
(pages/, one module each).

Adding a page (a lineage graph, KPI charts, ...):
  1. write mlbuild/ui/pages/NAME.py with ``render(root, query) -> str`` returning the body's
     HTML (build it with layout.table/badge/note and svg.graph/chart/bars; escape text with
     svg.esc) and ``PAGE = Page("/NAME", "Title", render)``; a page that also serves files
     (a report, a .dot download) passes ``raw``, answering GET /NAME/FILE;
  2. add "NAME" to MODULES in mlbuild/ui/pages/__init__.py (the navigation order).
  Query parameters arrive as a plain mapping; raise pages.BadQueryError for one the page cannot use
  (an unknown ?ref=: HTTP 400). Any other MlbuildError (no dvc.yaml yet, no commit, ...) is
  shown on the page as the project's state.

May import: lineage, ct, monitor, serve, registry, experiments, api and everything below them.
FastAPI and uvicorn are imported lazily, as in serve.
"""
