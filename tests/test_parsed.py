"""The JSON memo of parsed YAML answers only while the file is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

from mlbuild.dvcfmt.memo import load_yaml_memo


def test_memo_follows_edits_even_of_the_same_size(tmp_path: Path) -> None:
    path = tmp_path / "dvc.lock"
    memo = tmp_path / "memo"
    path.write_text("a: 1\n")
    assert load_yaml_memo(path, "dvc.lock", memo) == {"a": 1}
    assert any(memo.iterdir())  # the parsed form was kept
    st = path.stat()
    path.write_text("a: 2\n")  # same size; a new mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert load_yaml_memo(path, "dvc.lock", memo) == {"a": 2}


def test_values_json_cannot_hold_are_not_memoised(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    memo = tmp_path / "memo"
    path.write_text("1: one\nkey: two\n")  # an int key would come back as a string
    assert load_yaml_memo(path, "params.yaml", memo) == {1: "one", "key": "two"}
    assert load_yaml_memo(path, "params.yaml", memo) == {1: "one", "key": "two"}
    assert not memo.exists() or not any(memo.iterdir())
