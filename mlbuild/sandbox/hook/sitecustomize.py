"""Loaded by every Python process a stage starts (mlbuild puts this directory on PYTHONPATH).

It installs an audit hook that records which project files the process opens for reading
and writing, which project modules it imports, which environment variables it reads, and
every network use, refusing the network when the stage is hermetic. The record is written
as JSON into MLBUILD_TRACE_DIR when the process exits. Standard library only.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

_TRACE_DIR = os.environ.get("MLBUILD_TRACE_DIR")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_NET_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg",
               "socket.gethostbyname", "socket.gethostbyaddr")


def _target(event: str, args: tuple[object, ...]) -> object:
    """What a network event reaches: 'host:port' where the event says, else its address."""
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
        host = host.decode(errors="replace") if isinstance(host, bytes) else host
        return f"{host}:{port}" if port is not None else f"{host}"
    address = args[1] if len(args) > 1 else args[0]
    if isinstance(address, tuple) and len(address) >= 2:  # (host, port, ...)
        return f"{address[0]}:{address[1]}"
    return address


def _install(trace_dir: str) -> None:
    root = os.environ.get("MLBUILD_ROOT", "")
    network = os.environ.get("MLBUILD_NETWORK", "allow")
    allow = os.environ.get("MLBUILD_ALLOW_NETWORK", "'hermetic: {network: true}'")
    stage = os.environ.get("DVC_STAGE", "?")
    reads: set[str] = set()
    writes: set[str] = set()
    net: list[str] = []
    env_read: set[str] = set()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            full = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
            if not full.startswith(root):
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            (writes if writing else reads).add(full)
        elif event in _NET_EVENTS:
            if event == "socket.connect" and isinstance(args[1], (str, bytes)):
                return  # AF_UNIX: local inter-process communication
            what = f"{event.split('.', 1)[1]} {_target(event, args)}"
            net.append(what)
            if network == "deny":
                raise PermissionError(
                    f"mlbuild: stage '{stage}' is hermetic: network access is refused "
                    f"({what}); allow it with {allow}"
                )

    class _Environ(type(os.environ)):  # type: ignore[misc]
        def __getitem__(self, key: str) -> str:
            env_read.add(key)
            return str(super().__getitem__(key))

        def __contains__(self, key: object) -> bool:
            if isinstance(key, str):
                env_read.add(key)
            return bool(super().__contains__(key))

    def dump() -> None:
        modules = {
            os.path.abspath(f) for m in list(sys.modules.values())
            if isinstance(f := getattr(m, "__file__", None), str) and f.startswith(root)
        }
        tool = getattr(sys.modules.get("mlbuild"), "__file__", None)  # wherever it came from
        record = {"pid": os.getpid(), "reads": sorted(reads | modules), "writes": sorted(writes),
                  "network": net, "env": sorted(env_read),
                  "tool": os.path.dirname(os.path.abspath(tool)) if tool else None}
        try:
            with open(os.path.join(trace_dir, f"{os.getpid()}.json"), "w") as fobj:
                json.dump(record, fobj)
        except OSError:
            pass

    try:
        os.environ.__class__ = _Environ
    except TypeError:
        pass
    atexit.register(dump)
    sys.addaudithook(hook)


if _TRACE_DIR:
    _install(_TRACE_DIR)
