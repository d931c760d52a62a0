"""Schema modules load in mlbuild's process without leaving sys.path edits or stale copies."""

from __future__ import annotations

import sys
from pathlib import Path

from mlbuild.contracts import load_schema

SCHEMA = """
import pandera.pandas as pa

schema = pa.DataFrameSchema({"x": pa.Column(int, pa.Check.ge(%d))})
"""


def test_schema_module_is_loaded_fresh_and_leaves_no_trace(tmp_path: Path) -> None:
    (tmp_path / "myschemas.py").write_text(SCHEMA % 0)
    path_before = list(sys.path)
    first = load_schema(tmp_path, "myschemas:schema")
    assert sys.path == path_before
    assert "myschemas" not in sys.modules
    (tmp_path / "myschemas.py").write_text(SCHEMA % 5)  # edited while the process lives
    second = load_schema(tmp_path, "myschemas:schema")
    assert first.columns["x"].checks[0].statistics == {"min_value": 0}
    assert second.columns["x"].checks[0].statistics == {"min_value": 5}
