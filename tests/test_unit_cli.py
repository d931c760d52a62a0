"""Click's usage errors as mlbuild shows them: one line, one suggestion, from Click's data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import _env


@pytest.mark.parametrize(("args", "suggestion"), [
    (("stauts",), "Did you mean 'status'?"),
    (("data", "fsk"), "Did you mean 'fsck'?"),
    (("verify", "--twise"), "Did you mean '--twice'?"),
    (("run", "--forse"), "'--force'"),
])
def test_a_typo_gets_exactly_one_suggestion(tmp_path: object, args: tuple[str, ...],
                                            suggestion: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlbuild", *args], cwd=str(tmp_path),
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlbuild: error: No such"), proc.stderr
    assert suggestion in lines[0]
    assert lines[0].lower().count("did you mean") == 1
    assert lines[0].endswith("--help')")
