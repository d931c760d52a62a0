#!/bin/sh
# Install mlbuild with its test tools into .venv and run lint, types and the whole test suite.
# Safe to run twice. Used by CI (.ci/run) exactly as the README documents it.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check mlbuild tests stages scripts bench
.venv/bin/mypy
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest -n 2 -q "$@"
