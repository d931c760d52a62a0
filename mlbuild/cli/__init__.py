"""The mlbuild command line: the only code that prints or exits."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from mlbuild import __version__
from mlbuild.errors import EXIT_INTERNAL, MlbuildError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Declarative, DVC-compatible builds for reproducible machine learning.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
STATE = {"verbose": False}


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
    STATE["verbose"] = verbose


def _register() -> None:
    from mlbuild.cli import build, inspect

    build.register(app)
    inspect.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: map errors to one line and the documented exit code."""
    _register()
    verbose = "--verbose" in (argv or sys.argv) or "-v" in (argv or sys.argv)[:2]
    try:
        app(args=argv, prog_name="mlbuild", standalone_mode=True)
    except MlbuildError as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write(f"mlbuild: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("mlbuild: interrupted; outputs, cache and dvc.lock left consistent\n")
        sys.exit(130)
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write(
            f"mlbuild: internal error: {type(exc).__name__}: {exc} (rerun with --verbose)\n"
        )
        sys.exit(EXIT_INTERNAL)
