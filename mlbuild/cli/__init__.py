"""The command line: the only code that prints or exits. One module per command group,
named after it; the rich display lives here.

May import: api and everything below it.
"""
from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Annotated, NoReturn

import typer
from click.exceptions import ClickException, NoArgsIsHelpError

from mlbuild import __version__
from mlbuild.errors import EXIT_FAILED, EXIT_INTERNAL, MlbuildError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Declarative, DVC-compatible builds for reproducible machine learning.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Click suggests the closest command itself (NoSuchCommand.possibilities); Typer 0.20 would
# append a second "Did you mean" to the same message. (An attribute, not a keyword: older
# Typers have no such option and no such suggestion.)
app.suggest_commands = False
_SIGNALS: list[int] = []  # signals that stopped this run (SIGTERM, SIGHUP)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlbuild {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Declarative, DVC-compatible builds for reproducible machine learning."""
    # --verbose is read where it matters: by main() (tracebacks) and from Click's root
    # context (gc's listing)


COMMAND_MODULES = {"run": "build", "status": "inspect", "dag": "inspect", "compile": "inspect",
                   "verify": "check", "data": "data", "pull": "data", "push": "data",
                   "gc": "data", "log": "log", "exp": "exp",
                   "model": "model", "serve": "serve", "predict": "serve",
                   "monitor": "monitor", "ct": "ct", "lineage": "lineage",
                   "impact": "lineage", "audit": "lineage", "kpi": "lineage", "ui": "ui",
                   "export": "export"}


def _register(args: list[str]) -> None:
    """Import the module of the command being run (all of them for help or a typo): every
    command module costs start-up time, and `mlbuild run` is run many times a day."""
    import importlib

    command = next((a for a in args if not a.startswith("-")), None)
    wanted = COMMAND_MODULES.get(command or "")
    names = [wanted] if wanted else list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in names:
        importlib.import_module(f"mlbuild.cli.{name}").register(app)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP stop a build the way Ctrl-C does: running stages are ended and
    their previous outputs put back."""
    _SIGNALS.append(signum)
    raise KeyboardInterrupt


def _interrupted() -> NoReturn:
    signum = _SIGNALS[0] if _SIGNALS else signal.SIGINT
    sys.stderr.write(
        f"mlbuild: error: interrupted by {signal.Signals(signum).name}; running stages were "
        "stopped and their previous outputs, the cache and dvc.lock left as they were\n"
    )
    sys.exit(128 + signum)


def _usage_error(exc: ClickException) -> NoReturn:
    """Click's usage errors as one line instead of a help box."""
    if isinstance(exc, NoArgsIsHelpError):  # bare `mlbuild`: the help text
        exc.show()
        sys.exit(exc.exit_code)
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)  # a UsageError's; other Click errors have none
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    sys.stderr.write(f"mlbuild: error: {message}{hint}\n")
    sys.exit(exc.exit_code)


def _hoist_verbose(args: list[str]) -> tuple[list[str], bool]:
    """Accept -v/--verbose anywhere (`mlbuild run trian -v`), not only before the command;
    no subcommand has a -v of its own."""
    if "--verbose" not in args and "-v" not in args:
        return args, False
    return ["--verbose", *(a for a in args if a not in ("--verbose", "-v"))], True


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: map errors to one line and the documented exit code."""
    args, verbose = _hoist_verbose(list(sys.argv[1:] if argv is None else argv))
    _register(args)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _on_signal)
    try:
        _dispatch(args, verbose)
    except SystemExit as done:
        if argv is None:  # the console script, not a caller in this process
            _leave(done.code)
        raise
    finally:
        # the interpreter's last garbage collection walks every object of every imported
        # library (50-100 ms after a build); frozen objects are left to the OS to reclaim
        gc.freeze()


def _leave(code: object) -> None:
    """End the process now when the interpreter's teardown has nothing left to do: it would
    free every object of every imported library, one by one (30-45 ms after a build). Only
    when no other thread is alive; exit handlers run and the standard streams are flushed
    first, as at a normal exit."""
    if threading.active_count() > 1 or not isinstance(code, int | None):
        return
    gc.freeze()
    atexit._run_exitfuncs()
    failed = False
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            if stream is not sys.stdout:
                failed = True
                continue
            _stdout_closed()
            code = code or EXIT_FAILED  # as Click exits when it meets a closed pipe
        except (OSError, ValueError):  # let the interpreter report it
            failed = True
    if not failed:
        os._exit(code or 0)


def _internal(exc: Exception, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc()
    sys.stderr.write(
        f"mlbuild: internal error: {type(exc).__name__}: {exc} (rerun with --verbose)\n"
    )
    sys.exit(EXIT_INTERNAL)


def _stdout_closed() -> bool:
    """Whether standard output's reader has gone (`mlbuild status | head -c0`): then the rest
    of the output goes to /dev/null and the command exits 1, quietly, as Click's own handling
    of a closed pipe does."""
    from mlbuild.cli.plain import silence_stdout, stdout_closed

    if not stdout_closed():
        return False
    silence_stdout()
    return True


def _dispatch(args: list[str], verbose: bool) -> None:
    """Run the command; every outcome leaves through sys.exit with the documented code."""
    try:
        code = app(args=args, prog_name="mlbuild", standalone_mode=False)
    except ClickException as exc:
        _usage_error(exc)
    except typer.Abort:
        _interrupted()
    except MlbuildError as exc:
        if verbose:
            traceback.print_exc()
        one_line = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        sys.stderr.write(f"mlbuild: error: {one_line}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError as exc:
        if not _stdout_closed():
            _internal(exc, verbose)
        sys.exit(EXIT_FAILED)
    except Exception as exc:
        _internal(exc, verbose)
    if code == 130:  # Typer turns a KeyboardInterrupt inside a command into exit code 130
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)
