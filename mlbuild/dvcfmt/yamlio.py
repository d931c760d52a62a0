"""YAML and JSON reading and atomic writing; YAML errors become one-line ConfigErrors."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError
from mlbuild.files.temp import tmp_beside


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML text; a syntax error names the file, line and column."""
    import yaml

    from mlbuild.dvcfmt import yaml12

    try:
        return yaml12.load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, where) from exc


def yaml_error(exc: Exception, where: str) -> ConfigError:
    """A PyYAML error (syntax, or a tag the safe loader refuses) as one line naming the file,
    line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    loc = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    return ConfigError(f"{where}{loc}: malformed YAML: {problem}")


def locate(text: str, keys: list[Any], key_itself: bool = False) -> str:
    """':line:column' of the value at *keys* (mapping keys and list indexes) in YAML *text*
    (with *key_itself*, of the last key), or of its nearest enclosing node when it is absent;
    '' when the text does not parse.

    Composes the node tree only: no Python object is built, whatever tags the text holds.
    """
    import yaml

    from mlbuild.dvcfmt import yaml12

    try:
        node = yaml.compose(text, Loader=yaml12.Loader)
    except yaml.YAMLError:
        return ""
    mark = node.start_mark if node is not None else None
    for key in keys:
        found = _child(node, key)
        if found is None:
            break
        key_node, node = found
        mark = (key_node or node).start_mark if key_itself else node.start_mark
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def _child(node: Any, key: Any) -> tuple[Any, Any] | None:
    """(key node or None, value node) of *key* under *node*."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)),
                    None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return None, node.value[key]
    return None


def load_yaml(path: Path, where: str | None = None) -> Any:
    """Load a YAML file; missing or malformed files raise ConfigError."""
    label = where or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{label}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not a UTF-8 text file") from exc
    return parse_yaml(text, label)


def load_mapping(path: Path, where: str | None = None) -> dict[str, Any]:
    """Load a YAML file that must hold a mapping (an empty file is an empty mapping)."""
    data = load_yaml(path, where)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or path}: expected a mapping at the top level")
    return data


def dump_yaml(data: Any) -> str:
    """Serialise to block-style YAML keeping key order (DVC's YAML 1.2 reading of scalars)."""
    from mlbuild.dvcfmt import yaml12

    return yaml12.dump(data)


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, before any thread
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    """The mode a plain open() would give: the existing file's, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


# Files written with durable=False since the last sync_written(): made durable together.
_UNSYNCED: set[str] = set()
_UNSYNCED_LOCK = threading.Lock()


# Writes held back until the next sync_written() (a build's .gitignore entries: one write of
# each .gitignore per dvc.lock write instead of one per output).
_DEFERRED: list[Callable[[], None]] = []


def defer_until_sync(write: Callable[[], None]) -> None:
    """Run *write* (which writes with durable=False) at the next sync_written()."""
    with _UNSYNCED_LOCK:
        _DEFERRED.append(write)


def sync_written() -> None:
    """Do the deferred writes, then fsync every file write_atomic wrote with durable=False:
    one batch instead of one fsync per write. dvc.lock calls it before each write, so what
    dvc.lock records never outlives, after a power loss, the .gitignore entries written
    for it."""
    with _UNSYNCED_LOCK:
        deferred = list(_DEFERRED)
        _DEFERRED.clear()
    for write in deferred:
        write()
    with _UNSYNCED_LOCK:
        paths = sorted(_UNSYNCED)
        _UNSYNCED.clear()
    for name in paths:
        with contextlib.suppress(OSError):  # gone or replaced since: nothing left to sync
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_atomic(path: Path, text: str | bytes, what: str | None = None,
                 durable: bool | None = True) -> None:
    """Write a file atomically: temp file in the same directory, fsync, rename. A full disk
    raises DiskFullError naming *what* (default: the file) and its filesystem; the temp file
    (named with this pid, so a run after a crash can tell it is abandoned) never stays.
    With durable=False the fsync is left to the next sync_written(); with None there is none
    (a memo, which a reader checks and derives again when it is old, empty or torn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fobj:
            fobj.write(text.encode("utf-8") if isinstance(text, str) else text)
            fobj.flush()
            if durable:
                os.fsync(fobj.fileno())
            os.fchmod(fobj.fileno(), _mode_for(path))  # not 0600: what a plain open() gives
        os.replace(tmp, path)
        if durable is False:
            with _UNSYNCED_LOCK:
                _UNSYNCED.add(str(path))
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        from mlbuild.files.diskspace import full_error, is_full

        if is_full(exc):
            raise full_error(path, what or f"'{path.name}'") from exc
        raise


def write_memo(path: Path, text: str) -> None:
    """Write a file that only saves time later (a memo): if it cannot be written (a full disk,
    a read-only project), everything still works, just slower. Not fsynced: every memo is
    keyed on what it stands for and read with its parse errors caught, so after a power loss
    an old, empty or torn memo is only derived again (an fsync costs a build 10-20 ms)."""
    from mlbuild.errors import DiskFullError

    with contextlib.suppress(OSError, DiskFullError):
        write_atomic(path, text, durable=None)
