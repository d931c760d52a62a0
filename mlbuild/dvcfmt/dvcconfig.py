"""DVC's configuration: every level (system, global, repo, local), merged as DVC merges it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mlbuild.errors import BadInputError

_MEMO: dict[tuple[Path, tuple[tuple[int, int], ...]], dict[str, Any]] = {}


def _config_dirs() -> tuple[str, str]:
    """DVC's system and global config directories, as dvc.dirs finds them (platformdirs'
    site_config_dir and user_config_dir). On Linux the XDG rule is applied directly: importing
    platformdirs would cost a no-op build more than the rest of its config reading."""
    system, user = os.getenv("DVC_SYSTEM_CONFIG_DIR"), os.getenv("DVC_GLOBAL_CONFIG_DIR")
    if system and user:
        return system, user
    if sys.platform.startswith("linux"):
        dirs = (os.getenv("XDG_CONFIG_DIRS") or "").split(os.pathsep)[0].strip() or "/etc/xdg"
        home = os.getenv("XDG_CONFIG_HOME", "").strip() or str(Path("~/.config").expanduser())
        return system or str(Path(dirs) / "dvc"), user or str(Path(home) / "dvc")
    import platformdirs

    return (system or platformdirs.site_config_dir("dvc", "iterative"),
            user or platformdirs.user_config_dir("dvc", "iterative"))


def level_files(root: Path) -> list[Path]:
    """DVC's config files in merge order: system, global, repo, local."""
    system, user = _config_dirs()
    return [Path(system) / "config", Path(user) / "config", root / ".dvc" / "config",
            root / ".dvc" / "config.local"]


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


def load(root: Path) -> dict[str, Any]:
    """The merged config, read by DVC's own loader (which resolves a relative cache.dir against
    the file that sets it). When only the repository's files exist, the common case, they are
    read directly instead, so that a no-op build does not import DVC."""
    files = level_files(root)
    key = (root, tuple(_stamp(f) for f in files))
    if key not in _MEMO:
        outside = any(stamp != (-1, -1) for stamp in key[1][:2])
        _MEMO[key] = _with_dvc(root, files) if outside else _direct(root, files[2:])
    return _MEMO[key]


def _with_dvc(root: Path, files: list[Path]) -> dict[str, Any]:
    from dvc.config import Config, ConfigError

    try:
        return dict(Config(dvc_dir=str(root / ".dvc"), validate=True))
    except ConfigError as exc:
        where = ", ".join(str(f) for f in files if f.exists())
        raise BadInputError(f"DVC config ({where}): {' '.join(str(exc).split())}") from exc


def _direct(root: Path, files: list[Path]) -> dict[str, Any]:
    """Repo and local config (both in .dvc/, so relative paths resolve alike), read with the
    standard library: configobj, which DVC uses, is not worth its import on a no-op build."""
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(files, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise BadInputError(f"DVC config: {' '.join(str(exc).split())}") from exc
    merged: dict[str, Any] = {"core": {}, "cache": {}, "remote": {}}
    for section in parser.sections():
        name = " ".join(section.strip("'").replace('"', " ").split())
        values = {k.lower(): v.strip("'\"") for k, v in parser.items(section)}
        if name.lower().startswith("remote "):
            merged["remote"].setdefault(name.split(" ", 1)[1], {}).update(values)
        else:
            merged.setdefault(name.lower(), {}).update(values)
    cache = merged["cache"]
    if cache.get("dir"):
        cache["dir"] = str((root / ".dvc" / Path(cache["dir"]).expanduser()).resolve())
    return merged


def remote_names(root: Path) -> list[str]:
    """Every configured remote, at any level."""
    return sorted(load(root).get("remote") or {})


def cache_dir(root: Path) -> Path:
    """The local cache directory ('.dvc/cache' unless cache.dir says otherwise)."""
    configured = (load(root).get("cache") or {}).get("dir")
    return Path(str(configured)) if configured else root / ".dvc" / "cache"


def cache_types(root: Path) -> list[str]:
    """Link types to try when checking out from the cache, as DVC's cache.type."""
    configured = (load(root).get("cache") or {}).get("type") or "reflink,copy"
    if isinstance(configured, str):
        configured = configured.replace("[", "").replace("]", "").split(",")
    return [str(t).strip() for t in configured if str(t).strip()]


def default_remote(root: Path) -> str | None:
    """The core.remote setting."""
    remote = (load(root).get("core") or {}).get("remote")
    return str(remote) if remote else None
