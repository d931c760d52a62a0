"""Loaded by every Python process a stage starts (mlbuild puts this directory on PYTHONPATH).

It installs an audit hook that records which project files the process opens for reading
and writing, which project modules it imports, which environment variables it reads, and
every network use, refusing the network when the stage is hermetic. In a hermetic stage it
also refuses, before they happen, writes to tool metadata and to project files the stage did
not declare (the policy file MLBUILD_GUARD names), libc calls through ctypes that would open
files, sockets or programs unseen, and child interpreters started so that they would skip
this file (-I, -E, -S). Every child process gets the variables that load it again, even when
started with a fresh environment. The record is written as JSON into MLBUILD_TRACE_DIR when
the process exits. Standard library only.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: this file loads into every stage
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_NET_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg",
               "socket.gethostbyname", "socket.gethostbyaddr")
# What a child needs to load this file again and report into the same trace.
# PYTHONPYCACHEPREFIX too: a hermetic stage's bytecode goes to its own area, never the project.
_CARRIED = ("MLBUILD_TRACE_DIR", "MLBUILD_ROOT", "MLBUILD_NETWORK", "MLBUILD_ALLOW_NETWORK",
            "MLBUILD_GUARD", "MLBUILD_HERMETIC", "DVC_STAGE", "DVC_ROOT", "PYTHONPYCACHEPREFIX")
_HOOK_DIR = os.path.dirname(os.path.abspath(__file__))
# Taken at start-up: the stage's code may clear os.environ before starting a child.
_ORIGINAL: dict[str, str] = {}
# Events that change a path: (position of the path, position of its dir_fd) pairs the guard
# checks before they happen (a dir_fd is how shutil.rmtree removes what is inside a tree).
_MUTATING = {"os.rename": ((0, 2), (1, 3)), "os.remove": ((0, 1),), "os.truncate": ((0, -1),),
             "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.link": ((1, 3),),
             "os.symlink": ((1, 2),), "os.mkdir": ((0, 2),)}
# The argument position of the path those events create (recorded as written).
_CREATING = {"os.rename": 1, "os.link": 1, "os.symlink": 1}
# libc entry points that would open files, sockets or programs behind the audit hook's back.
_LIBC_UNSEEN = frozenset((
    "fopen", "fopen64", "freopen", "freopen64", "open", "open64", "openat", "openat64",
    "creat", "creat64", "socket", "connect", "getaddrinfo", "gethostbyname", "system",
    "popen", "execv", "execve", "execvp", "execvpe", "execl", "execlp", "posix_spawn",
    "posix_spawnp", "fork", "vfork", "unlink", "unlinkat", "rename", "renameat", "remove",
    "truncate", "mkfifo", "dlopen"))
_ISOLATING = ("I", "E", "S")  # interpreter flags that skip PYTHONPATH or site


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


def _carry(env: object) -> None:
    """Give a child's environment (or ours, which it inherits) what loads this hook."""
    target = os.environ if env is None else env
    if not hasattr(target, "get") or not hasattr(target, "__setitem__"):
        return
    for key, value in _ORIGINAL.items():
        if target.get(key) != value:
            target[key] = value
    path = str(target.get("PYTHONPATH") or "")
    if _HOOK_DIR not in path.split(os.pathsep):
        target["PYTHONPATH"] = os.pathsep.join([_HOOK_DIR, *([path] if path else [])])


def _lacks(env: object) -> bool:
    """True when a child's environment would not load this hook into the same trace."""
    get = getattr(env, "get", None)
    if get is None:
        return True
    path = str(get("PYTHONPATH") or "").split(os.pathsep)
    return _HOOK_DIR not in path or any(get(key) != value for key, value in _ORIGINAL.items())


def _is_python(word: str) -> bool:
    name = os.path.basename(word)
    return name == "python" or (name.startswith("python") and name[6:].replace(".", "").isdigit())


def _resolve(path: object, dir_fd: object) -> str | None:
    """The absolute path an event names, its dir_fd resolved through /proc (Linux)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return None
    text = os.fsdecode(path)
    if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(text):
        try:
            return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        except OSError:
            return None
    return os.path.abspath(text)


def _isolated_python(argv: object) -> str | None:
    """The flag that would start a Python interpreter without this hook, if any."""
    import shlex

    if isinstance(argv, (str, bytes)):
        try:
            words = shlex.split(os.fsdecode(argv))
        except ValueError:
            words = os.fsdecode(argv).split()
    elif isinstance(argv, (list, tuple)):
        words = [os.fsdecode(w) for w in argv if isinstance(w, (str, bytes, os.PathLike))]
    else:
        return None
    for i, word in enumerate(words):
        if " " in word and (found := _isolated_python(word)):  # sh -c "python -I ..."
            return found
        if _is_python(word):
            return _isolating_flag(words[i + 1:])
    return None


def _isolating_flag(args: list[str]) -> str | None:
    """The first of -I, -E, -S among an interpreter's options (before its program)."""
    skip = False
    for flag in args:
        if skip:
            skip = False
            continue
        if not flag.startswith("-") or flag.startswith("--") or flag == "-":
            return None
        letters = _letters(flag[1:])
        if any(f in letters for f in _ISOLATING):
            return flag
        if letters != flag[1:]:  # -c/-m end the options; -W/-X take an argument
            if flag[len(letters) + 1] in "cm":
                return None
            skip = len(flag) == len(letters) + 2  # "-X dev": the argument is the next word
    return None


def _letters(cluster: str) -> str:
    """The option letters of a short-option cluster, up to one that takes an argument."""
    for i, letter in enumerate(cluster):
        if letter in "cmWX":
            return cluster[:i]
    return cluster


class _Tracer:
    """One process's record of what it touched, and the stage's rules for it."""

    def __init__(self, trace_dir: str) -> None:
        self.trace_dir = trace_dir
        self.root = os.environ.get("MLBUILD_ROOT", "")
        self.network = os.environ.get("MLBUILD_NETWORK", "allow")
        self.allow = os.environ.get("MLBUILD_ALLOW_NETWORK", "'hermetic: {network: true}'")
        self.stage = os.environ.get("DVC_STAGE", "?")
        self.hermetic = os.environ.get("MLBUILD_HERMETIC") == "1"
        self.guard_file = os.environ.get("MLBUILD_GUARD")
        self.policy: dict[str, Any] = {}
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.refused: list[str] = []
        self.net: list[str] = []
        self.env_read: set[str] = set()
        self.unseen: list[str] = []  # programs started that are not Python: not traced
        self.eager = False  # a forked child may leave by os._exit, without atexit
        self.dumping = False  # writing the record opens a file too
        prefix = os.path.realpath(sys.prefix) + os.sep
        # a venv inside the project is the tool's, not the stage's
        self.tool = prefix[len(self.root):] if prefix.startswith(self.root) else None

    def handlers(self) -> dict[str, Callable[[tuple[Any, ...]], None]]:
        """The audit events this tracer answers, each with its handler."""
        found: dict[str, Callable[[tuple[Any, ...]], None]] = {
            "open": self.on_open, "ctypes.dlsym": self.on_dlsym,
            "subprocess.Popen": lambda a: self.on_exec(a[1], a[3], program=a[0]),
            "os.exec": lambda a: self.on_exec(a[1], a[2], parsed=True, program=a[0]),
            "os.posix_spawn": lambda a: self.on_exec(a[1], a[2], parsed=True, program=a[0]),
            "os.system": lambda a: self.on_exec(a[0], None, program="sh"),
        }
        for name in _NET_EVENTS:
            found[name] = functools.partial(self.on_net, name)
        if self.guard_file:
            for name in _MUTATING:
                found[name] = functools.partial(self.on_change, name)
        return found

    def refuse(self, what: str) -> None:
        """Record and refuse an action (the caller gets PermissionError)."""
        self.refused.append(what)
        self.dump()  # now: a forked child that is refused leaves by os._exit, without atexit
        raise PermissionError(f"mlbuild: stage '{self.stage}' is hermetic: {what}")

    def metadata(self, rel: str) -> bool:
        """Tool metadata a stage never writes (its HOME and TMPDIR are allowed before this)."""
        first = rel.split("/", 1)[0]
        if first == ".dvc":
            return not rel.startswith(".dvc/tmp/") or rel.startswith(".dvc/tmp/mlbuild/")
        return (first in (".git", ".mlbuild") or rel in ("dvc.yaml", "dvc.lock", "params.yaml")
                or rel.rsplit("/", 1)[-1] in (".gitignore", ".dvcignore")
                or (self.tool is not None and rel.startswith(self.tool)))

    def _rules(self) -> dict[str, Any]:
        if not self.policy:  # read on the first write: most events never need it
            with open(str(self.guard_file), encoding="utf-8") as fobj:
                self.policy.update(json.load(fobj))
            self.policy["existing"] = set(self.policy["existing"])
        return self.policy

    def guard(self, path: str | None, tree: bool = False, create: bool = False) -> None:
        """Refuse a change to tool metadata or to a project file the stage did not declare
        (with *tree*, to a directory holding one; with *create*, only tool metadata)."""
        if path is None:
            return
        full = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if not (full + os.sep).startswith(self.root):
            return
        rules = self._rules()
        rel = full[len(self.root):] if full != self.root.rstrip(os.sep) else "."
        if (any(full == a or full.startswith(a + os.sep) for a in rules["allow"])
                or _covered(rel, rules["outs"])):
            return
        if self.metadata(rel):
            self.refuse(f"writing '{rel}' (tool metadata) is refused")
        if "__pycache__" in rel.split("/"):  # bytecode there runs in later stages and tools
            self.refuse(f"writing '{rel}' (a project bytecode cache) is refused; the stage's "
                        "own bytecode goes to PYTHONPYCACHEPREFIX")
        if not create and (rel in rules["existing"] or _covered(rel, rules["others"]) or (
                tree and any(e.startswith(rel + "/") for e in rules["existing"]))):
            self.refuse(f"changing '{rel}', which it does not declare as an output, is refused "
                        "(nothing was changed)")

    def on_exec(self, argv: object, env: object, parsed: bool = False,
                program: object = None) -> None:
        """Give the child what loads the hook; *parsed*: the event comes after the
        environment was read (os.exec*, os.posix_spawn), so a scrubbed one is refused. A
        *program* that is not Python is noted: the trace cannot vouch for what it does."""
        name = os.fsdecode(program) if isinstance(program, (str, bytes, os.PathLike)) else "?"
        if not _is_python(name):
            self.unseen.append(name)
        if parsed and self.hermetic and env is not None and _lacks(env):
            self.refuse("starting a process with an environment that drops mlbuild's "
                        "variables would escape its audit hook; pass os.environ on (or use "
                        "subprocess)")
        _carry(env)
        flag = _isolated_python(argv) if self.hermetic else None
        if flag is not None:
            self.refuse(f"starting Python with '{flag}' would escape its audit hook; drop "
                        "the flag")

    def on_open(self, args: tuple[Any, ...]) -> None:
        """Record a project file opened; check a write before it happens."""
        path, mode, flags = args
        if path is None or isinstance(path, int):
            return
        full = os.path.abspath(os.fsdecode(path))
        if not full.startswith(self.root):
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writing and self.guard_file:
            self.guard(os.path.realpath(full))  # a write follows a symlink to its target
        (self.writes if writing else self.reads).add(full)
        if writing and self.eager and not self.dumping:
            self.dump()

    def on_change(self, event: str, args: tuple[Any, ...]) -> None:
        """Check a rename, removal, truncation, link or mode change before it happens."""
        for pos, fd_pos in _MUTATING[event]:
            fd = args[fd_pos] if fd_pos >= 0 else None
            path = _resolve(args[pos], fd)
            self.guard(path, tree=event == "os.rename", create=event == "os.mkdir")
            if path is not None and event in _CREATING and pos == _CREATING[event]:
                self.writes.add(path)  # a file made by renaming or linking is written too
                if self.eager and not self.dumping:
                    self.dump()

    def on_net(self, event: str, args: tuple[Any, ...]) -> None:
        """Record network use; refuse it when the stage is hermetic."""
        if event == "socket.connect" and isinstance(args[1], (str, bytes)):
            return  # AF_UNIX: local inter-process communication
        what = f"{event.split('.', 1)[1]} {_target(event, args)}"
        self.net.append(what)
        if self.network == "deny":
            raise PermissionError(
                f"mlbuild: stage '{self.stage}' is hermetic: network access is refused "
                f"({what}); allow it with {self.allow}"
            )

    def on_dlsym(self, args: tuple[Any, ...]) -> None:
        """Refuse libc entry points reached through ctypes that would act unseen."""
        if self.hermetic and args[1] in _LIBC_UNSEEN:
            self.refuse(f"calling '{args[1]}' through ctypes is refused (the audit hook "
                        "cannot see what it opens)")

    def dump(self) -> None:
        """Write this process's record into the trace directory."""
        root = self.root
        modules = {
            os.path.abspath(f) for m in list(sys.modules.values())
            if isinstance(f := getattr(m, "__file__", None), str) and f.startswith(root)
        }
        tool = getattr(sys.modules.get("mlbuild"), "__file__", None)  # wherever it came from
        record = {"pid": os.getpid(), "reads": sorted(self.reads | modules),
                  "writes": sorted(self.writes), "network": self.net,
                  "env": sorted(self.env_read), "refused": self.refused,
                  "unseen": self.unseen,
                  "tool": os.path.dirname(os.path.abspath(tool)) if tool else None}
        self.dumping = True
        try:
            with open(os.path.join(self.trace_dir, f"{os.getpid()}.json"), "w") as fobj:
                json.dump(record, fobj)
        except OSError:
            pass
        finally:
            self.dumping = False


def _covered(rel: str, paths: Any) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths)


def _install(trace_dir: str) -> None:
    tracer = _Tracer(trace_dir)
    handlers = tracer.handlers()
    env_read = tracer.env_read

    def hook(event: str, args: tuple[Any, ...]) -> None:
        handler = handlers.get(event)
        if handler is not None:
            handler(args)

    class _Environ(type(os.environ)):  # type: ignore[misc]
        def __getitem__(self, key: str) -> str:
            env_read.add(key)
            return str(super().__getitem__(key))

        def __contains__(self, key: object) -> bool:
            if isinstance(key, str):
                env_read.add(key)
            return bool(super().__contains__(key))

    try:
        os.environ.__class__ = _Environ
    except TypeError:
        pass
    atexit.register(tracer.dump)
    os.register_at_fork(after_in_child=functools.partial(setattr, tracer, "eager", True))
    sys.addaudithook(hook)


def activate() -> None:
    """Install the hook for the stage this process runs: at start-up, or in a warm
    interpreter's child once it has taken the stage's environment (_mlbuild_warm.py)."""
    _ORIGINAL.update({key: os.environ[key] for key in _CARRIED if key in os.environ})
    trace_dir = os.environ.get("MLBUILD_TRACE_DIR")
    if trace_dir:
        from _mlbuild_bytecode import keep_installed_bytecode  # type: ignore[import-not-found]

        keep_installed_bytecode(os.environ.get("MLBUILD_ROOT", ""))
        _install(trace_dir)


activate()
