"""Installed code keeps its bytecode in a hermetic stage; the project's goes to the stage area.

A hermetic stage runs with PYTHONPYCACHEPREFIX set to its own area, so that no bytecode is
read from or written to the project's `__pycache__` folders. Python applies that prefix to
every module, so each new stage area would compile the interpreter's library and every
installed package again (pandas, scikit-learn, LightGBM: about 6 CPU-seconds a stage), where
pip already compiled them at install time. This module, loaded by sitecustomize, keeps the
prefix for the project's code and lets installed code (under the interpreter's prefixes and
site-packages, unless that is inside the project while the interpreter is not) use its
`__pycache__` beside the source, exactly as it does outside mlbuild. Standard library only.
"""

from __future__ import annotations

import os
import site
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _installed_roots() -> tuple[str, ...]:
    """Folders whose modules are installed code: the interpreter's prefixes and site-packages."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    folders.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    # both spellings: sys.path may name a folder through a link (a venv's lib64)
    spelled = {g for f in folders if f for g in (f, os.path.realpath(f))}
    return tuple(os.path.join(f, "") for f in spelled)


def installed_check(project: str, roots: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a source path is installed code rather than the project's (*project* ends in
    a separator): a project inside /usr stays the project's, a venv inside the project
    stays installed."""
    inside = tuple(r for r in roots if r.startswith(project))

    def installed(path: str) -> bool:
        if project and path.startswith(project):
            return path.startswith(inside) if inside else False
        return path.startswith(roots)
    return installed


def keep_installed_bytecode(project: str) -> None:
    """Map installed modules' bytecode back beside their source (see the module docstring).
    importlib's source loader looks `cache_from_source` up as a global of this private module
    on each import (the same since Python 3.4), so replacing it there is enough."""
    if sys.pycache_prefix is None:
        return
    import importlib._bootstrap_external as external

    own: Callable[..., str] = external.cache_from_source
    installed = installed_check(project, _installed_roots())

    def cache_from_source(path: str | os.PathLike[str], debug_override: bool | None = None, *,
                          optimization: object = None) -> str:
        cached = own(path, debug_override, optimization=optimization)
        source = os.fspath(path)
        if not installed(source):
            return cached
        return os.path.join(os.path.dirname(source), "__pycache__", os.path.basename(cached))
    external.cache_from_source = cache_from_source
