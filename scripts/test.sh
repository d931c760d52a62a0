#!/bin/sh
# Install mlbuild with its test tools into .venv and run lint, types and the whole test suite;
# then run the suite again under the oldest Python 3.11+ on PATH (for example Debian 12's
# 3.11.2), in .venv-oldest, when it is older than the first one: "3.11+" is a claim we test.
# Safe to run twice. Used by CI (.ci/run) exactly as the README documents it.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

setup() {  # setup VENV PYTHON
  [ -x "$1/bin/python" ] || "$2" -m venv "$1"
  "$1/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$1/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
}

setup .venv "$PY"
.venv/bin/ruff check mlbuild tests stages scripts bench
.venv/bin/mypy
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest -n 2 -q "$@"

OLDEST=$(.venv/bin/python scripts/oldest_python.py)
if [ -n "$OLDEST" ]; then
  echo "== the suite again under the oldest supported Python on PATH: $OLDEST"
  setup .venv-oldest "$OLDEST"
  PATH="$PWD/.venv-oldest/bin:$PATH" .venv-oldest/bin/python -m pytest -n 2 -q "$@"
fi
