"""The dashboard's pages, one module each, in the order of the navigation bar.

A page module defines ``PAGE = Page(path, title, render)`` (and optionally ``raw``, files
served under its path); listing the module's name in MODULES is all it takes to add it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlbuild.errors import UsageError

MODULES = ("pipeline", "runs", "experiments", "registry", "lineage", "drift", "kpi")

Render = Callable[[Path, Mapping[str, str]], str]  # (project root, query) -> the body's HTML
Raw = Callable[[Path, str], tuple[str, str] | None]  # (root, name) -> (content, media type)


class BadQueryError(UsageError):
    """A query parameter the page cannot use (HTTP 400); other errors describe the project
    and are shown on an ordinary page."""


@dataclass(frozen=True)
class Page:
    """One page: served at *path*, named *title* in the navigation, drawn by *render*;
    *raw*, when given, answers GET {path}/{name} (a report to open, a file to download)."""

    path: str
    title: str
    render: Render
    raw: Raw | None = None


def pages() -> list[Page]:
    """Every page, in navigation order."""
    return [importlib.import_module(f"mlbuild.ui.pages.{name}").PAGE for name in MODULES]
