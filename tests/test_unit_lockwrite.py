"""dvc.lock is written from one memoised YAML block per stage: the text must equal a dump of
the whole file, whatever the entries hold, and a changed entry must never keep its old text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbuild.dvcfmt import yaml12
from mlbuild.dvcfmt.lockfile import LockEntry, LockFile

LONG = "python train.py " + " ".join(f"--flag-{i}=value-{i}" for i in range(12))
TRICKY: dict[str, dict[str, Any]] = {
    "prep": {"cmd": "python prep.py", "deps": [
        {"path": "data/raw.csv", "hash": "md5", "md5": "0" * 32, "size": 10}],
        "outs": [{"path": "features", "hash": "md5", "md5": "1" * 32 + ".dir", "size": 3,
                  "nfiles": 2}]},
    "train@lr-0.1": {"cmd": LONG, "params": {"params.yaml": {
        "flag": "yes", "octal": "010", "small": "1e-3", "none": "null", "on": "on",
        "float": 1e-3, "int": 10, "bool": True, "list": [1, "2", None]},
        "other file.yaml": {"name": "café ✓", "colon": "a: b", "hash": "x #y"}}},
    "multi": {"cmd": ["echo one", "echo 'two' > t.txt", LONG]},
    "a stage: quoted": {"cmd": "true", "outs": [{"path": "we ird/pa#th.txt", "hash": "md5",
                                                 "md5": "12345678901234567890123456789012",
                                                 "size": 0}]},
}


def _lock(tmp_path: Path, stages: dict[str, dict[str, Any]]) -> LockFile:
    (tmp_path / ".dvc").mkdir(exist_ok=True)
    lock = LockFile(tmp_path)
    for name, raw in stages.items():
        lock.update(name, LockEntry.parse(raw))
    lock.flush()
    return lock


def _whole(stages: dict[str, dict[str, Any]]) -> str:
    return yaml12.dump({"schema": "2.0", "stages": stages})


def test_the_file_equals_a_dump_of_the_whole_lock(tmp_path: Path) -> None:
    _lock(tmp_path, TRICKY)
    text = (tmp_path / "dvc.lock").read_text(encoding="utf-8")
    assert text == _whole(TRICKY)
    assert yaml12.load(text)["stages"] == TRICKY


def test_a_changed_entry_is_emitted_again_and_the_others_are_kept(tmp_path: Path) -> None:
    lock = _lock(tmp_path, TRICKY)
    changed = dict(TRICKY)
    changed["prep"] = {**TRICKY["prep"], "cmd": "python prep.py --fast"}
    changed["new"] = {"cmd": "touch n", "outs": [{"path": "n", "hash": "md5",
                                                  "md5": "d41d8cd98f00b204e9800998ecf8427e",
                                                  "size": 0}]}
    lock.update("prep", LockEntry.parse(changed["prep"]))
    lock.update("new", LockEntry.parse(changed["new"]))
    lock.flush()
    text = (tmp_path / "dvc.lock").read_text(encoding="utf-8")
    assert text == _whole(changed)
    assert "python prep.py --fast" in text


def test_an_entry_read_back_from_the_file_is_rewritten_unchanged(tmp_path: Path) -> None:
    _lock(tmp_path, TRICKY)
    again = LockFile(tmp_path)  # entries read back (through the JSON memo), not built
    again.update("multi", LockEntry.parse({"cmd": "true"}))
    again.flush()
    expected = {**TRICKY, "multi": {"cmd": "true"}}
    assert (tmp_path / "dvc.lock").read_text(encoding="utf-8") == _whole(expected)


def test_an_empty_lock_is_written_as_a_whole_dump_would_be(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    lock = LockFile(tmp_path)
    assert lock._text() == _whole({})
