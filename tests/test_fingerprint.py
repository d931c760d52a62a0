"""mlbuild's hashing agrees with dvc-data's (the oracle), and the stat cache avoids rehashing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlbuild.store import hashing as fingerprint
from mlbuild.store.hashing import Hasher
from mlbuild.store.statcache import StatCache


def _dvc_data_hash(path: Path, odb_dir: Path) -> tuple[str, int, int | None]:
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    _, meta, obj = build(LocalHashFileDB(fs, str(odb_dir)), str(path), fs, "md5")
    return obj.hash_info.value, meta.size, meta.nfiles


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "d" / "sub" / "deeper").mkdir(parents=True)
    (root / "d" / "a.txt").write_text("hello\r\nworld\n")  # CRLF: plain md5, no dos2unix
    (root / "d" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 300)
    (root / "d" / "sub" / "deeper" / "c").write_text("")
    (root / "d" / "z").write_text("last")
    (root / "big").write_bytes(os.urandom(3 * fingerprint.BLOCK + 17))
    return root


def test_directory_hash_matches_dvc_data(tree: Path, tmp_path: Path) -> None:
    info = Hasher(tree, StatCache(tmp_path / "sc.json")).path("d")
    assert info is not None
    assert (info.md5, info.size, info.nfiles) == _dvc_data_hash(tree / "d", tmp_path / "odb")


def test_file_hash_matches_dvc_data(tree: Path, tmp_path: Path) -> None:
    hasher = Hasher(tree, StatCache(tmp_path / "sc.json"))
    for rel in ("big", "d/a.txt", "d/sub/deeper/c"):
        info = hasher.path(rel)
        assert info is not None
        md5, size, _ = _dvc_data_hash(tree / rel, tmp_path / "odb")
        assert (info.md5, info.size) == (md5, size)


def test_missing_path_hashes_to_none(tree: Path, tmp_path: Path) -> None:
    assert Hasher(tree, StatCache(tmp_path / "sc.json")).path("nope") is None


def test_stat_cache_answers_for_unchanged_files(tree: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache_file = tmp_path / "sc.json"
    first = Hasher(tree, StatCache(cache_file))
    expected = first.path("big")
    first.cache.save()
    calls: list[Path] = []
    real = fingerprint.md5_file
    monkeypatch.setattr(fingerprint, "md5_file", lambda p: calls.append(p) or real(p))
    second = Hasher(tree, StatCache(cache_file))
    assert second.path("big") == expected
    assert calls == []  # answered from the persisted stat cache
    (tree / "big").write_bytes(b"changed")
    changed = second.path("big")
    assert calls == [tree / "big"]
    assert changed is not None and changed.md5 != expected.md5  # type: ignore[union-attr]


def test_store_commits_what_dvc_data_hashes(tree: Path, tmp_path: Path) -> None:
    from mlbuild.store import cache as cache_mod
    from mlbuild.store.cache import Cache

    (tree / "d" / "large.bin").write_bytes(os.urandom(cache_mod.INGEST_MIN + 5))
    (tree / ".dvc").mkdir()
    store = Cache(tree)
    hasher = Hasher(tree, StatCache(tmp_path / "sc.json"))
    info = store.store(tree / "d", hasher)
    assert (info.md5, info.size, info.nfiles) == _dvc_data_hash(tree / "d", tmp_path / "odb")
    assert store.complete(info)
    for rel, md5 in store.manifest(info.md5):
        assert store.object_path(md5).read_bytes() == (tree / "d" / rel).read_bytes()
    assert hasher.cached(tree / "d" / "large.bin") is not None  # hashed once, remembered
