#!/bin/sh
# Install mlbuild with its test tools and run lint, types and the whole test suite, under the
# oldest Python 3.11+ on PATH (Debian 12's system Python is 3.11.2): "3.11+" is a claim we test.
# PYTHON=/path/to/python picks another interpreter. The environment is .venv-test.
# Safe to run twice. Used by CI (.ci/run) exactly as the README documents it.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(python3 scripts/oldest_python.py)}"
[ -n "$PY" ] || { echo "no Python 3.11 or newer on PATH" >&2; exit 2; }
VENV=.venv-test
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "== tests under $("$VENV/bin/python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
# The venv's own pip installs editable pyproject projects (PEP 660, pip 21.3+): no upgrade.
# Byte-compiling at install stays: with PYTHONDONTWRITEBYTECODE set, every test subprocess
# would otherwise compile DVC and the rest again (the suite took twice the CPU time).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
"$VENV/bin/ruff" check mlbuild tests stages scripts bench
"$VENV/bin/mypy"
PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -n 2 -q "$@"
