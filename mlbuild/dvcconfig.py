"""Read the few settings mlbuild needs from .dvc/config and .dvc/config.local."""

from __future__ import annotations

from pathlib import Path


def read_config(root: Path) -> dict[str, dict[str, str]]:
    """Sections of DVC's config (later files override), with remote names unquoted."""
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read([root / ".dvc" / "config", root / ".dvc" / "config.local"], encoding="utf-8")
    out: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        name = section.strip("'\"").replace('"', "")
        out[" ".join(name.split())] = dict(parser.items(section))
    return out


def cache_dir(root: Path) -> Path:
    """The local cache directory ('.dvc/cache' unless cache.dir says otherwise)."""
    configured = read_config(root).get("cache", {}).get("dir")
    if not configured:
        return root / ".dvc" / "cache"
    path = Path(configured)
    return path if path.is_absolute() else (root / ".dvc" / path).resolve()


def cache_types(root: Path) -> list[str]:
    """Link types to try when checking out from the cache, as DVC's cache.type."""
    configured = read_config(root).get("cache", {}).get("type", "reflink,copy")
    return [t.strip() for t in configured.replace("[", "").replace("]", "").split(",") if t]


def default_remote(root: Path) -> str | None:
    """The core.remote setting."""
    return read_config(root).get("core", {}).get("remote")
