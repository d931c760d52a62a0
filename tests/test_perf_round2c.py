"""Performance round two, part c (issue 17): the status of a directory of many files answered
from a per-directory memo of its files' stats and md5s (no stat cache read, no manifest
rebuilt or read). The memo must never hide a change (in-place edits of the same size with
the mtime put back, edits since an earlier status, files added or removed, a damaged memo)
and real DVC must agree with every verdict."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

from mlbuild.store.dirmemo import NEVER, DirMemo
from mlbuild.store.dirscan import _hash
from tests.conftest import Project
from tests.scenario import UP_TO_DATE, assert_dvc_up_to_date, load_yaml
from tests.test_perf_paths import (
    MAKE_TREE,
    _assert_cache_intact,
    _data_project,
    _dvc_dir_hash,
    _files,
    _tree_project,
    _wait_and_rewrite,
    lock_out,
)

MEMOS = Path(".dvc") / "tmp" / "mlbuild" / "dirs"


def _edit_in_place(path: Path, data: bytes) -> None:
    """Overwrite the file's bytes (same size) in place and put its mtime back, so only its
    ctime (which nobody can set back) tells that it changed."""
    before = path.stat()
    assert len(data) == before.st_size
    with open(path, "r+b") as fobj:
        fobj.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _changed(proj: Project) -> list[object]:
    changes = proj.run_json("status")["data"]
    assert isinstance(changes, list)
    assert [c["change"] for c in changes] in ([], ["modified"]), changes
    return list(changes[0]["files"]) if changes else []


def _added(tmp_path: Path) -> Project:
    proj = _data_project(tmp_path, "p")
    added = proj.run("data", "add", "raw/images")
    assert added.returncode == 0, added.stderr + added.stdout
    return proj


def test_a_tracked_directory_has_a_memo_and_status_names_edits_from_it(tmp_path: Path) -> None:
    proj = _added(tmp_path)
    assert len(list((proj.path / MEMOS).glob("*.memo"))) == 1  # written by the add
    assert _changed(proj) == []
    data = proj.path / "raw" / "images"
    first = data / "img002.bin"
    original = first.read_bytes()
    _edit_in_place(first, bytes(reversed(original)))
    assert _changed(proj) == ["raw/images/img002.bin"]
    assert "modified:" in proj.dvc("status").stdout  # DVC sees the same change
    # an edit after that status: both are named (the memo keeps the recorded state's md5s)
    second = data / "nested" / "img005.bin"
    _edit_in_place(second, b"z" * second.stat().st_size)
    assert _changed(proj) == ["raw/images/img002.bin", "raw/images/nested/img005.bin"]
    # the first file given back its recorded bytes: no longer named
    _edit_in_place(first, original)
    assert _changed(proj) == ["raw/images/nested/img005.bin"]
    # recorded again: nothing left, for mlbuild and for DVC (whose own state, keyed on
    # inode, mtime and size, would not see edits whose mtime was put back: move them on)
    os.utime(first)
    os.utime(second)
    again = proj.run("data", "add", "raw/images")
    assert again.returncode == 0, again.stderr + again.stdout
    assert _changed(proj) == []
    assert UP_TO_DATE in proj.dvc("status").stdout


def test_a_damaged_or_foreign_memo_is_ignored(tmp_path: Path) -> None:
    proj = _added(tmp_path)
    memo = next((proj.path / MEMOS).glob("*.memo"))
    body = memo.read_bytes()
    edited: list[str] = []
    damages = (body[: len(body) // 2], b"", b"\x00garbage", body.replace(b"raw", b"xyz"))
    for i, damaged in enumerate(damages):
        memo.write_bytes(damaged)
        assert _changed(proj) == edited, damaged[:20]
        rel = f"raw/images/img{10 + 2 * i:03d}.bin"
        target = proj.path / rel
        memo.write_bytes(damaged)
        _edit_in_place(target, b"q" * target.stat().st_size)
        edited.append(rel)
        proc = proj.run("status")
        assert proc.returncode == 0, proc.stderr
        assert all(name in proc.stdout for name in edited), proc.stdout
        assert "Traceback" not in proc.stderr
    assert _changed(proj) == edited


def test_a_directory_output_edited_in_place_is_stale_despite_its_memo(tmp_path: Path) -> None:
    proj = _tree_project(tmp_path)
    built = proj.run("run")
    assert built.returncode == 0, built.stderr + built.stdout
    assert list((proj.path / MEMOS).glob("*.memo"))  # written by the commit
    assert proj.run_json("status")["up_to_date"] is True
    target = proj.path / "many" / "sub" / "f001.txt"
    os.chmod(target, 0o644)  # noqa: PTH101 - a user unprotecting an output
    _edit_in_place(target, b"y" * target.stat().st_size)
    report = proj.run_json("status")
    assert report["up_to_date"] is False
    assert "changed outs" in proj.dvc("status").stdout  # DVC sees it too
    rebuilt = proj.run("run")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    assert proj.run_json("status")["up_to_date"] is True
    assert_dvc_up_to_date(proj)


def test_the_memo_of_an_output_holds_the_hash_dvc_lock_records(tmp_path: Path) -> None:
    proj = _tree_project(tmp_path)
    assert proj.run("run").returncode == 0
    md5 = str(lock_out(proj)["md5"])
    (proj.path / ".dvc" / "tmp" / "mlbuild" / "stat-cache.json").unlink()
    # no stat cache: the status is answered from the memo, and agrees with dvc.lock and DVC
    assert proj.run_json("status")["up_to_date"] is True
    assert str(load_yaml(proj.path / "dvc.lock")["stages"]["many"]["outs"][0]["md5"]) == md5
    assert_dvc_up_to_date(proj)


def test_a_file_that_changes_while_it_is_hashed_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    st = path.stat()
    before = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    assert _hash(str(tmp_path), "f.bin", before) == (hashlib.md5(b"one").hexdigest(), before)
    path.write_bytes(b"two!")  # changed after the stat the scan took: the md5 read is not
    # the content of that stat, so the memo must not pair them
    assert _hash(str(tmp_path), "f.bin", before) == (hashlib.md5(b"two!").hexdigest(), NEVER)


WIDE = 2000  # files: enough for a memo, and to catch an order or batching mistake


def _wide_project(tmp_path: Path) -> Project:
    """A stage making a directory of many files (MAKE_TREE with more of them)."""
    proj = _tree_project(tmp_path)
    files = WIDE
    proj.write("make.py", MAKE_TREE.replace("range(300)", f"range({files})"))
    return proj


def test_many_files_committed_are_what_dvc_commits_and_their_memo_agrees(tmp_path: Path) -> None:
    proj = _wide_project(tmp_path)
    built = proj.run("run")
    assert built.returncode == 0, built.stderr + built.stdout
    assert len(_files(proj.path / "many")) > WIDE
    assert lock_out(proj) == {"path": "many", "hash": "md5", **_dvc_dir_hash(proj, "many")}
    memo = DirMemo(proj.path / MEMOS).load("many")
    assert memo is not None and memo.tree == lock_out(proj)["md5"]
    assert sorted(memo.names) == sorted(_files(proj.path / "many"))
    assert proj.run_json("status")["up_to_date"] is True
    _assert_cache_intact(proj)
    assert_dvc_up_to_date(proj)
    expected = _files(proj.path / "many")
    shutil.rmtree(proj.path / "many")
    restored = proj.dvc("checkout", "many")
    assert restored.returncode == 0, restored.stderr
    assert _files(proj.path / "many") == expected


def test_many_files_changing_while_committed_keep_the_cache_and_memo_true(
        tmp_path: Path) -> None:
    proj = _wide_project(tmp_path)
    stop = threading.Event()
    watcher = threading.Thread(target=_wait_and_rewrite, args=(proj.path / "many", stop))
    watcher.start()
    try:
        built = proj.run("run")
    finally:
        stop.set()
        watcher.join()
    assert built.returncode == 0, built.stderr + built.stdout
    _assert_cache_intact(proj)
    shutil.rmtree(proj.path / "many")
    restored = proj.dvc("checkout", "many")
    assert restored.returncode == 0, restored.stderr
    assert proj.dvc("status").stdout.strip().startswith(UP_TO_DATE)
    assert proj.run_json("status")["up_to_date"] is True
