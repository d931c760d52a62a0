"""The page shell every dashboard page shares (title, navigation, inline CSS: nothing is
fetched from the network, not even a favicon) and the small HTML pieces pages are made of:
tables, badges, notes, times."""

from __future__ import annotations

import time
from collections.abc import Sequence

from mlbuild.ui.svg import esc

__all__ = ["STYLE", "badge", "esc", "note", "number", "page", "table", "when"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#212121;
background:#fafafa}
header{background:#263238;color:#fff;padding:0 24px;display:flex;align-items:center;gap:24px}
header .brand{font-weight:bold;font-size:18px;padding:14px 0}
nav a{color:#cfd8dc;text-decoration:none;padding:16px 10px;display:inline-block}
nav a.active{color:#fff;border-bottom:3px solid #4fc3f7}
main{padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:24px 0 8px}
h3{font-size:15px;margin:16px 0 6px}
.muted{color:#757575}.root{color:#b0bec5;font-size:12px;margin-left:auto}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:13px}
th,td{border:1px solid #e0e0e0;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#eceff1}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;color:#fff}
.ok{background:#2e7d32}.stale{background:#e65100}.failed{background:#c62828}
.frozen{background:#546e7a}.info{background:#1565c0}.warn{background:#f9a825;color:#212121}
.note{background:#fff;border-left:4px solid #1565c0;padding:8px 12px;margin:8px 0}
.note.error{border-color:#c62828}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg{background:#fff;border:1px solid #e0e0e0}
details>summary{cursor:pointer}
code{background:#eceff1;padding:0 4px;border-radius:3px}
"""


def page(title: str, body: str, nav: Sequence[tuple[str, str]], active: str,
         root: str = "") -> str:
    """A whole HTML document: *nav* is (path, label) for each page, *active* the current path."""
    links = "".join(f'<a href="{esc(path)}"{" class=active" if path == active else ""}>'
                    f"{esc(label)}</a>" for path, label in nav)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<link rel='icon' href='data:,'>"  # no /favicon.ico request, no 404 in the console
            f"<title>{esc(title)} · mlbuild</title><style>{STYLE}</style></head><body>"
            f"<header><span class='brand'>mlbuild</span><nav>{links}</nav>"
            f"<span class='root'>{esc(root)}</span></header>"
            f"<main><h1>{esc(title)}</h1>{body}</main></body></html>\n")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] = (),
          css: str = "") -> str:
    """A table; cells are HTML already (escape text with esc); *numeric* right-aligns."""
    right = list(numeric) + [False] * (len(header) - len(numeric))
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if r else ''}>{cell}</td>"
                                    for cell, r in zip(row, right, strict=False)) + "</tr>"
                   for row in rows)
    return f"<table{f' class={css!r}' if css else ''}><tr>{head}</tr>{body}</table>"


def badge(text: str, kind: str) -> str:
    """A coloured label: kind is ok, stale, failed, frozen, info or warn."""
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def note(text: str, error: bool = False) -> str:
    """A boxed remark (text, escaped here)."""
    return f'<p class="note{" error" if error else ""}">{esc(text)}</p>'


def when(seconds: float) -> str:
    """A Unix time as UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def number(value: object) -> str:
    """A cell value as `exp show` prints it: floats to 5 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return esc(value)
