"""The test fixtures themselves: subprocesses find this checkout's mlbuild however they are
started, installed or not."""

from __future__ import annotations

import os

from tests.conftest import REPO, _env


def test_extra_pythonpath_is_added_to_the_checkout_not_put_in_its_place() -> None:
    env = _env({"PYTHONPATH": "/somewhere/site"})
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts[0] == str(REPO)
    assert "/somewhere/site" in parts


def test_other_extras_still_override() -> None:
    assert _env({"COLUMNS": "80"})["COLUMNS"] == "80"
