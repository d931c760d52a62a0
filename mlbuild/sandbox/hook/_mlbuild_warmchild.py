"""The child a warm interpreter forks for one stage command (see _mlbuild_warm.py): it takes
the stage's process group, output files, directory, environment, arguments and audit hook,
runs the program in __main__ as `python -m module` or `python script.py` would, and leaves as
the interpreter does. Standard library only.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def child(req: dict[str, Any], fds: list[int], close: list[int],
           conn: socket.socket) -> None:
    """In the forked child: become the stage's process, run its program, and leave."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if req.get("pgid") is not None:
            os.setpgid(0, req["pgid"])
        else:
            os.setsid()
        for fd in {*close, conn.fileno()}:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for target, fd in ((0, devnull), (1, fds[0]), (2, fds[1])):
            os.dup2(fd, target)
            os.close(fd)
        _become(req)
    except BaseException:  # nothing of the stage ran: say so on its stderr
        import traceback

        traceback.print_exc()
        os._exit(code)
    _leave(_run(req["argv"]))


def _become(req: dict[str, Any]) -> None:
    """Take the stage's directory, environment, arguments and audit hook."""
    import importlib
    import time

    os.chdir(req["cwd"])
    importlib.invalidate_caches()  # a fresh interpreter has no directory listings cached
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ["PWD"] = os.getcwd()  # as the stage's shell exports it
    sys.pycache_prefix = os.environ.get("PYTHONPYCACHEPREFIX") or None
    time.tzset()
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None  # type: ignore[attr-defined] # TMPDIR: the stage's
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # a fresh interpreter seeds it from the OS (random re-seeds)
        numpy_random.seed()
    argv = req["argv"]
    if argv[0] == "-m":
        sys.argv = ["-m", *argv[2:]]
        sys.path.insert(0, os.getcwd())
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.realpath(argv[0])))
    sys.orig_argv = [sys.executable, *argv]
    import sitecustomize  # type: ignore[import-not-found]

    sitecustomize.activate()


def _run(argv: list[str]) -> int:
    """Run the program as `python` would, in __main__; return the exit status."""
    main = sys.modules["__main__"]
    for name in [n for n in vars(main) if n not in ("__builtins__", "__name__")]:
        delattr(main, name)
    try:
        if argv[0] == "-m":
            import runpy

            runpy._run_module_as_main(argv[1], alter_argv=True)  # type: ignore[attr-defined]
        else:
            _run_script(argv[0], vars(main))
    except SystemExit as exc:
        return _exit_status(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as CPython: end by the signal itself
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # the interpreter prints it and exits with 1
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _run_script(path: str, scope: dict[str, Any]) -> None:
    from importlib.machinery import SourceFileLoader

    with open(path, "rb") as fobj:
        source = fobj.read()
    scope.update(__name__="__main__", __file__=os.path.abspath(path), __cached__=None,
                 __loader__=SourceFileLoader("__main__", path), __spec__=None,
                 __package__=None)
    exec(compile(source, os.path.abspath(path), "exec"), scope)  # the stage's own program


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _flush() -> bool:
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            ok = False
    return ok


def _leave(code: int) -> None:
    """Leave as the interpreter does: non-daemon threads joined, atexit run, streams flushed."""
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except BaseException:  # as at interpreter exit: ignored
        pass
    atexit._run_exitfuncs()
    if not _flush() and code == 0:
        code = 120
    os._exit(code)
