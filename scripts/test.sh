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
# One pytest worker per usable core (the CPUs this process may run on; GNU nproc would
# follow OMP_NUM_THREADS), at least 2 (a test waiting on a signal or a server leaves its core
# to the other) and at most 8 (each worker has its zygotes and warm-start pool, about 1 GB);
# MLBUILD_TEST_WORKERS=N chooses any N. The suite is CPU-bound: on 2 cores, more workers
# than cores bought nothing (3: 282 s and 538 CPU-seconds, 4: 263 s and 518, against
# 266-268 s and 448-450 for 2). loadgroup: a module marked xdist_group (an expensive module
# fixture) runs on one worker only; with plain load scheduling every worker built the
# lineage history, for instance.
if [ -n "${MLBUILD_TEST_WORKERS:-}" ]; then
    case $MLBUILD_TEST_WORKERS in
        *[!0-9]* | 0*) echo "MLBUILD_TEST_WORKERS: expected a number of workers (1 or more)," \
                            "got '$MLBUILD_TEST_WORKERS'" >&2
                       exit 2 ;;
    esac
    WORKERS=$MLBUILD_TEST_WORKERS
else
    WORKERS=$("$PY" -c 'import os; print(min(8, max(2, len(os.sched_getaffinity(0)))))')
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "== tests under $("$VENV/bin/python" -c \
    'import sys; print(sys.executable, sys.version.split()[0])')"
# uv (from PyPI, into the venv) installs the ~130 packages with parallel downloads: on a fresh
# machine pip took 377 s against uv's 87 s, installing uv included, side by side. pip
# installs them instead when uv cannot (the venv's own pip installs editable pyproject
# projects: PEP 660, pip 21.3+). Byte-compiling at install stays: hermetic stages and every
# test subprocess read installed packages' bytecode (with PYTHONDONTWRITEBYTECODE set they
# would otherwise compile DVC, pandas and the rest again in every process).
PIP="$VENV/bin/python -m pip install --quiet --disable-pip-version-check"
if $PIP 'uv>=0.5,<1' && "$VENV/bin/uv" pip install --quiet --native-tls --compile-bytecode \
        --python "$VENV/bin/python" -e '.[test]'; then
    :
else
    echo "== uv could not install; installing with pip" >&2
    $PIP -e '.[test]'
fi
# mypy (about 15 CPU-seconds from a fresh clone, one core) checks while the other
# environment installs and the tests run, at a lower priority than the tests (it takes the
# CPU they leave idle): waiting for it before the tests cost 10 s of a fresh clone's run.
# Its verdict is awaited at the end, and fails the command as before.
MYPY_LOG=$(mktemp)
nice -n 10 "$VENV/bin/mypy" > "$MYPY_LOG" 2>&1 &
MYPY_PID=$!
# Evidently is the reference the drift verdicts are checked against (tests/test_monitor_drift.py).
# It does not import under pandas 3, which mlbuild supports, so it gets an environment of its own.
EV=.venv-evidently
# uv makes the environment in a tenth of a second (venv's own pip bootstrap takes 3 s); the
# standard venv when uv cannot
[ -x "$EV/bin/python" ] || "$VENV/bin/uv" venv --quiet --python "$PY" "$EV" 2>/dev/null \
    || "$PY" -m venv "$EV"
EVIDENTLY="evidently==0.7.23 pandas>=2.1,<3"
# shellcheck disable=SC2086
"$VENV/bin/uv" pip install --quiet --native-tls --python "$EV/bin/python" $EVIDENTLY 2>/dev/null \
    || { "$PY" -m venv "$EV" &&  # with its pip, which uv's environment lacks
         "$EV/bin/python" -m pip install --quiet --disable-pip-version-check $EVIDENTLY; }
MLBUILD_EVIDENTLY_PYTHON="$PWD/$EV/bin/python"
export MLBUILD_EVIDENTLY_PYTHON
# Debian's Chromium for the tests that open pages in a real headless browser (Playwright drives
# it; Playwright's own browser downloads are never used).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing Debian's chromium for the browser tests"
        apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || {
            apt-get update -q >/dev/null &&
            apt-get install -y -q --no-install-recommends chromium >/dev/null; }
    else
        echo "== the browser tests need Debian's chromium: sudo apt-get install chromium" >&2
    fi
fi
"$VENV/bin/ruff" check mlbuild tests stages scripts bench
# The tests' temporary files (about 1 GB of projects, caches and scratch workspaces, made and
# removed by the hundred thousand) go to a tmpfs when /dev/shm is one with 4 GB free, lets
# programs run from it (Docker mounts it noexec) and TMPDIR is not set: on an ext4 file system
# without a journal (this machine's root, for one), making files soon after many were removed
# is 3-5 times slower (bench/README.md, "Deleted files"). They are removed at the end when the
# tests pass, kept for a look when not, until the next run of this script (which removes
# those of runs that are over: their memory is the machine's).
SCRATCH=""
for old in /dev/shm/mlbuild-tests-*; do
    pid=${old#/dev/shm/mlbuild-tests-}
    pid=${pid%%-*}
    [ -d "$old" ] && ! kill -0 "$pid" 2>/dev/null && rm -rf "$old"
done
if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
        [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt 4194304 ]; then
    SCRATCH=$(mktemp -d "/dev/shm/mlbuild-tests-$$-XXXXXX")
    printf '#!/bin/sh\nexit 0\n' > "$SCRATCH/probe" && chmod +x "$SCRATCH/probe"
    if "$SCRATCH/probe" 2>/dev/null; then
        rm -f "$SCRATCH/probe"
        TMPDIR=$SCRATCH
        export TMPDIR
    else
        rm -rf "$SCRATCH"
        SCRATCH=""
    fi
fi
echo "== pytest with $WORKERS workers"
TESTS_OK=0
PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -n "$WORKERS" --dist loadgroup -q \
    "$@" || TESTS_OK=$?
if [ -n "$SCRATCH" ]; then
    if [ "$TESTS_OK" = 0 ]; then
        rm -rf "$SCRATCH" || true
    else
        echo "== the tests' temporary files are in $SCRATCH (memory: rm -rf it when done)" >&2
    fi
fi
MYPY_OK=0
wait "$MYPY_PID" || MYPY_OK=$?
cat "$MYPY_LOG"
rm -f "$MYPY_LOG"
[ "$MYPY_OK" = 0 ] || exit "$MYPY_OK"
exit "$TESTS_OK"
