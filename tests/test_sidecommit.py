"""A big directory's commit shared with a helper process (mlbuild/store/sidecommit.py, issue
17): the helper's answers are exactly a one-process commit's, a file it could not commit is
committed again by mlbuild (with mlbuild's own error), and a helper that cannot start or
dies changes nothing but the speed. The commit through the CLI, checked by real DVC (dvc.lock
hash, `dvc status`, `dvc checkout`, files rewritten meanwhile), is in test_perf_round2c's
2,000-file tests, which take this path."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from mlbuild.files.layout import stat_key
from mlbuild.store import sidecommit
from mlbuild.store.linkcommit import FRESH_NS, Linked, recheck
from mlbuild.store.onepass import SMALL, ObjectWriter
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
                          False, None)
    for path, answer in zip(share[1:-3], answers[1:-3], strict=True):
        data = path.read_bytes()
        md5 = hashlib.md5(data).hexdigest()
        assert answer == (md5, len(data), stat_key(path.stat()), False, None)
        obj = files / md5[:2] / md5[2:]
        assert obj.read_bytes() == data
        assert not obj.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert answers[-3] is None  # too big for one read: streamed by mlbuild itself
    tool_md5 = hashlib.md5(b"#!/bin/sh\n").hexdigest()
    assert answers[-2] == (tool_md5, 10, stat_key(tool.stat()), True, None)
    assert answers[-1] is False  # refused there: committed again (and refused) by mlbuild
    assert not list(files.rglob("*.tmp"))


@pytest.mark.parametrize("interpreter", ["/nonexistent/python", "/bin/false"])
def test_a_helper_that_cannot_start_or_dies_leaves_every_file_to_mlbuild(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interpreter: str) -> None:
    paths = _tree(tmp_path / "d", 50)
    monkeypatch.setattr(sidecommit.sys, "executable", interpreter)
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


def test_under_cache_type_hardlink_the_helper_links_and_reports_each_link(
        tmp_path: Path) -> None:
    paths = _tree(tmp_path / "d", 40)
    time.sleep(2 * FRESH_NS / 1e9)  # older than a clock tick: linked, not copied
    files = _cache(tmp_path)
    helper = sidecommit.Helper(ObjectWriter(files, link=True), [str(p) for p in paths], {})
    linked: list[Linked] = []
    reads = [sidecommit.as_read(answer, linked) for answer in helper.answers()]
    assert len(linked) == 40  # every file was linked, and the parent knows of every link
    for path, read, link in zip(paths, reads, linked, strict=True):
        assert read is not None
        assert read.md5 == hashlib.md5(path.read_bytes()).hexdigest()
        obj = files / read.md5[:2] / read.md5[2:]
        assert link.obj == str(obj) and obj.samefile(path)
        assert path.stat().st_mode & 0o777 == 0o444  # protected, as DVC leaves it
    assert not recheck(linked)  # nothing written since: every link stands
    paths[3].chmod(0o644)
    paths[3].write_text("written after the commit\n")
    assert recheck(linked)  # the parent's recheck sees what the helper linked
    assert not (files / reads[3].md5[:2] / reads[3].md5[2:]).exists()
