"""A big directory's commit shared with a helper process (mlbuild/store/sidecommit.py, issue
17): the helper's answers are exactly a one-process commit's, a file it could not commit is
committed again by mlbuild (with mlbuild's own error), and a helper that cannot start, dies,
hangs or answers garbage changes nothing but the speed. The commit through the CLI, checked
by real DVC (dvc.lock hash, `dvc status`, `dvc checkout`, files rewritten meanwhile), is in
test_perf_round2c's 2,000-file tests, which take this path."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlbuild.files.layout import stat_key
from mlbuild.store import commit, sidecommit
from mlbuild.store.hashing import Hasher
from mlbuild.store.onepass import SMALL, ObjectWriter
from mlbuild.store.statcache import StatCache
from tests.scenario import assert_dvc_up_to_date, lock, new_project


def _tree(top: Path, count: int) -> list[Path]:
    top.mkdir()
    paths = []
    for i in range(count):
        path = top / f"f{i:05d}.txt"
        path.write_text(f"file {i % 700}\n")  # repeated contents: objects shared
        paths.append(path)
    return paths


def _cache(tmp_path: Path) -> Path:
    files = tmp_path / "cache" / "files" / "md5"
    files.mkdir(parents=True)
    return files


def test_the_helper_commits_as_one_process_would(tmp_path: Path) -> None:
    paths = _tree(tmp_path / "d", 2100)
    big = tmp_path / "d" / "big.bin"
    big.write_bytes(b"x" * (SMALL + 1))
    tool = tmp_path / "d" / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    pipe = tmp_path / "d" / "pipe"
    os.mkfifo(pipe)
    # what the stat cache knows: trusted only for the same stat identity, as in one process
    known_path, stale_path = paths[0], paths[1]
    remembered = "0" * 32
    files = _cache(tmp_path)
    (files / "00").mkdir()
    (files / "00" / remembered[2:]).write_text("stored earlier\n")
    known = {str(known_path): [*stat_key(known_path.stat()), remembered],
             str(stale_path): [1, 2, 3, 4, remembered]}
    share = [*paths, big, tool, pipe]
    helper = sidecommit.Helper(ObjectWriter(files), [str(p) for p in share], known)
    answers = helper.answers()
    assert len(answers) == len(share)
    assert answers[0] == (remembered, known_path.stat().st_size, stat_key(known_path.stat()),
                          False)
    for path, answer in zip(share[1:-3], answers[1:-3], strict=True):
        data = path.read_bytes()
        md5 = hashlib.md5(data).hexdigest()
        assert answer == (md5, len(data), stat_key(path.stat()), False)
        obj = files / md5[:2] / md5[2:]
        assert obj.read_bytes() == data
        assert not obj.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert answers[-3] is None  # too big for one read: streamed by mlbuild itself
    tool_md5 = hashlib.md5(b"#!/bin/sh\n").hexdigest()
    assert answers[-2] == (tool_md5, 10, stat_key(tool.stat()), True)
    assert answers[-1] is False  # refused there: committed again (and refused) by mlbuild
    assert not list(files.rglob("*.tmp"))


@pytest.mark.parametrize("interpreter", ["/nonexistent/python", "/bin/false"])
def test_a_helper_that_cannot_start_or_dies_leaves_every_file_to_mlbuild(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interpreter: str) -> None:
    paths = _tree(tmp_path / "d", 50)
    monkeypatch.setattr(sys, "executable", interpreter)
    helper = sidecommit.Helper(ObjectWriter(_cache(tmp_path)), [str(p) for p in paths], {})
    assert helper.answers() == [False] * len(paths)


MAKE = """
stages:
  make:
    cmd: >-
      python -c "import os, pathlib; d = pathlib.Path('out'); (d / 'zz').mkdir(parents=True);
      [(d / f'f{i:05d}.txt').write_text(str(i)) for i in range(2500)];
      os.mkfifo('out/zz/pipe')"
    outs: [out]
"""


def test_a_file_the_helper_refuses_is_refused_by_mlbuild_with_its_name(tmp_path: Path) -> None:
    # the top folder's files come first in a directory's walk, a subfolder's last: the FIFO
    # is in the helper's half
    proj = new_project(tmp_path / "p", {"dvc.yaml": MAKE})
    proc = proj.run("run", timeout=120)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "mlbuild: error: 'out/zz/pipe' is a FIFO" in proc.stderr
    assert not (proj.path / "dvc.lock").exists() or "make" not in lock(proj)
    proj.write("dvc.yaml", MAKE.replace(";\n      os.mkfifo('out/zz/pipe')", ""))
    proc = proj.run("run", timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert lock(proj)["make"]["outs"][0]["nfiles"] == 2500
    assert_dvc_up_to_date(proj)


def _fake_python(tmp_path: Path, body: str) -> str:
    """An 'interpreter' that ignores its arguments and runs *body* (real Python) instead."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\nimport marshal, sys, time\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_malformed_answers_are_committed_again_and_a_hung_helper_is_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md5 = "a" * 32
    good, bad = (md5, 3, (1, 2, 3, 4), False), [(md5,), ("short", 3, None, False),
                                                  (md5, "3", None, False), (md5, 3, ("x",), 1)]
    monkeypatch.setattr(sys, "executable", _fake_python(
        tmp_path, f"sys.stdin.buffer.read()\n"
                  f"sys.stdout.buffer.write(marshal.dumps([{good!r}, None, *{bad!r}]))"))
    helper = sidecommit.Helper(ObjectWriter(_cache(tmp_path)), ["p"] * 6, {})
    assert helper.answers() == [good, None, False, False, False, False]
    hung = tmp_path / "hung"
    hung.mkdir()
    monkeypatch.setattr(sidecommit, "TIMEOUT_S", 0.5)
    monkeypatch.setattr(sys, "executable",
                        _fake_python(hung, "sys.stdin.buffer.read()\ntime.sleep(60)"))
    started = time.monotonic()
    helper = sidecommit.Helper(ObjectWriter(_cache(hung)), ["p"] * 3, {})
    assert helper.answers() == [False] * 3
    assert time.monotonic() - started < 30
    assert helper._proc is not None and helper._proc.poll() is not None  # killed, reaped


@pytest.mark.skipif(sidecommit.cores() < 2, reason="a helper needs a second core")
def test_a_big_directory_is_half_committed_by_the_helper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "d"
    _tree(top, 2100)
    hasher = Hasher(tmp_path, StatCache(tmp_path / "stat-cache.json"))
    items = commit.walk(top, hasher)
    here: list[str] = []
    one = commit.commit_one

    def counted(*args: Any, **kwargs: Any) -> Any:
        here.append(args[2])
        return one(*args, **kwargs)

    monkeypatch.setattr(commit, "commit_one", counted)
    writer = ObjectWriter(_cache(tmp_path))
    reads = commit._commit_items(hasher, writer, items, "d", None)
    assert len(here) == len(items) // 2  # the other half was the helper's
    assert sidecommit.worth_it(len(items), linking=True) is False  # links stay in mlbuild
    for (_, full, key), read in zip(items, reads, strict=True):
        data = Path(full).read_bytes()
        assert read is not None and read.md5 == hashlib.md5(data).hexdigest()
        assert read.key == stat_key(Path(full).stat())
        assert hasher.cache.get(key, read.key) == read.md5  # the stat cache learnt each
        assert (writer.files / read.md5[:2] / read.md5[2:]).read_bytes() == data
