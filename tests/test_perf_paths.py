"""The fast paths of many-file commits (issue 17): a directory output committed one pass per
file, `mlbuild data add` done natively, status naming changed files. Each keeps DVC's formats
(real DVC agrees afterwards and restores what mlbuild committed) and the cache's integrity
(no object is stored under a hash its content does not have), even while files change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import Project
from tests.scenario import UP_TO_DATE, assert_dvc_up_to_date, load_yaml, new_project

BIG = 1024 * 1024 + 4096  # over onepass.SMALL: streamed, not read whole

MAKE_TREE = """\
import os, pathlib, sys
out = pathlib.Path(sys.argv[1])
(out / "sub" / "deeper").mkdir(parents=True)
for i in range(300):
    (out / ("sub" if i % 3 else "") / f"f{i:03d}.txt").write_text("x" * (i // 7) + str(i))
(out / "sub" / "deeper" / "empty").write_bytes(b"")
(out / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
tool = out / "tool.sh"
tool.write_text("#!/bin/sh\\n")
tool.chmod(0o755)
""".replace("BIG", str(BIG))


def _tree_project(tmp_path: Path, name: str = "p") -> Project:
    return new_project(tmp_path / name, {
        "make.py": MAKE_TREE,
        "dvc.yaml": "stages:\n  many:\n    cmd: python make.py many\n    deps: [make.py]\n"
                    "    outs: [many]\n",
    })


def _files(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes()
            for p in sorted(top.rglob("*")) if p.is_file()}


def _objects(proj: Project) -> dict[str, Path]:
    files = proj.path / ".dvc" / "cache" / "files" / "md5"
    return {p.parent.name + p.name: p for p in files.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _assert_cache_intact(proj: Project) -> None:
    """Every object's content has the hash it is stored under (a .dir one too)."""
    objects = _objects(proj)
    assert objects
    for name, path in objects.items():
        actual = hashlib.md5(path.read_bytes()).hexdigest()
        assert actual == name.removesuffix(".dir"), f"{path} holds content of md5 {actual}"
        assert path.stat().st_mode & 0o777 == 0o444, path  # protected, as DVC leaves it


def _dvc_dir_hash(proj: Project, rel: str) -> dict[str, object]:
    """What real DVC computes for a directory (dvc-data's own hashing, no cache writes)."""
    code = ("import json, sys; from dvc_data.hashfile.build import build; "
            "from dvc_data.hashfile.db import HashFileDB; from dvc.fs import LocalFileSystem; "
            "fs = LocalFileSystem(); odb = HashFileDB(fs, sys.argv[2]); "
            "_, meta, obj = build(odb, sys.argv[1], fs, 'md5'); "
            "print(json.dumps([obj.hash_info.value, meta.size, meta.nfiles]))")
    out = subprocess.run([sys.executable, "-c", code, str(proj.path / rel),
                          str(proj.path.parent / "odb")], capture_output=True, text=True,
                         check=True)
    md5, size, nfiles = json.loads(out.stdout)
    return {"md5": md5, "size": size, "nfiles": nfiles}


def test_directory_output_commit_is_dvcs_and_dvc_restores_it(tmp_path: Path) -> None:
    proj = _tree_project(tmp_path)
    built = proj.run("run")
    assert built.returncode == 0, built.stderr + built.stdout
    out = lock_out(proj)
    assert out == {"path": "many", "hash": "md5", **_dvc_dir_hash(proj, "many")}
    manifest = _objects(proj)[str(out["md5"])].read_bytes()
    entries = json.loads(manifest)
    assert [e["relpath"] for e in entries] == sorted(_files(proj.path / "many"))
    # byte-compatible: DVC's layout is json.dumps of sorted {md5, relpath} with its spacing
    assert manifest == json.dumps(entries, sort_keys=True).encode()
    _assert_cache_intact(proj)
    assert_dvc_up_to_date(proj)
    expected = _files(proj.path / "many")
    shutil.rmtree(proj.path / "many")
    restored = proj.dvc("checkout", "many")
    assert restored.returncode == 0, restored.stderr
    assert _files(proj.path / "many") == expected


def lock_out(proj: Project) -> dict[str, object]:
    """The 'many' stage's only output in dvc.lock."""
    return dict(load_yaml(proj.path / "dvc.lock")["stages"]["many"]["outs"][0])


def _rewrite_until(stop: threading.Event, top: Path) -> None:
    """Keep rewriting files in place (new sizes, new bytes) while mlbuild commits them."""
    n = 0
    while not stop.is_set():
        n += 1
        for path in [*sorted(top.rglob("*.txt"))[:40], top / "big.bin"]:
            try:
                with open(path, "r+b") as fobj:  # in place: a reader can see it half done
                    fobj.write(os.urandom(16) * (1 + n % 5))
            except OSError:
                pass


def test_files_changing_while_committed_never_corrupt_the_cache(tmp_path: Path) -> None:
    proj = _tree_project(tmp_path)
    proj.write("dvc.yaml", "stages:\n  many:\n    cmd: python make.py many\n"
               "    deps: [make.py]\n    outs: [many]\n")
    # the stage makes the tree, then the writer thread edits it until mlbuild has finished
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
    # what dvc.lock records is in the cache, whole, under hashes DVC checks on checkout
    shutil.rmtree(proj.path / "many")
    restored = proj.dvc("checkout", "many")
    assert restored.returncode == 0, restored.stderr
    assert proj.dvc("status").stdout.strip().startswith(UP_TO_DATE)
    status = proj.run_json("status")
    assert status["up_to_date"] is True


def _wait_and_rewrite(top: Path, stop: threading.Event) -> None:
    while not stop.is_set() and not (top / "big.bin").exists():
        stop.wait(0.005)
    _rewrite_until(stop, top)


def _data_project(tmp_path: Path, name: str) -> Project:
    proj = new_project(tmp_path / name, {"README": "data\n"})
    data = proj.path / "raw" / "images"
    (data / "nested").mkdir(parents=True)
    for i in range(200):
        (data / ("nested" if i % 2 else "") / f"img{i:03d}.bin").write_bytes(
            hashlib.md5(str(i).encode()).digest() * (1 + i % 9))
    (data / "big.bin").write_bytes(os.urandom(BIG))
    return proj


def test_data_add_writes_what_dvc_add_writes(tmp_path: Path) -> None:
    ours = _data_project(tmp_path, "ours")
    theirs = new_project(tmp_path / "theirs", {"README": "data\n"})
    shutil.copytree(ours.path / "raw", theirs.path / "raw")
    added = ours.run("data", "add", "raw/images")
    assert added.returncode == 0, added.stderr + added.stdout
    assert "raw/images.dvc" in added.stdout
    assert theirs.dvc("add", "raw/images").returncode == 0
    for rel in ("raw/images.dvc", "raw/.gitignore"):
        assert (ours.path / rel).read_bytes() == (theirs.path / rel).read_bytes(), rel
    assert _objects(ours).keys() == _objects(theirs).keys()
    _assert_cache_intact(ours)
    assert ours.dvc("status").stdout.strip().startswith(UP_TO_DATE)
    expected = _files(ours.path / "raw" / "images")
    shutil.rmtree(ours.path / "raw" / "images")
    assert ours.dvc("checkout").returncode == 0
    assert _files(ours.path / "raw" / "images") == expected


def test_data_add_of_a_file_and_re_add_after_a_change(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"README": "x\n"})
    tool = proj.write("bin/tool.sh", "#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    assert proj.run("data", "add", "bin/tool.sh").returncode == 0
    pointer = load_yaml(proj.path / "bin" / "tool.sh.dvc")["outs"][0]
    assert pointer["isexec"] is True and pointer["path"] == "tool.sh"
    assert pointer["md5"] == hashlib.md5(tool.read_bytes()).hexdigest()
    tool.chmod(0o755)
    tool.write_text("#!/bin/sh\necho changed\n")
    again = proj.run("data", "add", "bin/tool.sh")  # an existing pointer: DVC updates it
    assert again.returncode == 0, again.stderr
    assert load_yaml(proj.path / "bin" / "tool.sh.dvc")["outs"][0]["md5"] == hashlib.md5(
        tool.read_bytes()).hexdigest()
    assert proj.dvc("status").stdout.strip().startswith(UP_TO_DATE)


def test_status_names_the_changed_files_of_a_tracked_directory(tmp_path: Path) -> None:
    proj = _data_project(tmp_path, "p")
    assert proj.run("data", "add", "raw/images").returncode == 0
    data = proj.path / "raw" / "images"
    edited = [f"raw/images/img{i:03d}.bin" for i in range(0, 16, 2)]
    for rel in edited:
        (proj.path / rel).write_bytes(b"edited " + rel.encode())
    (data / "nested" / "img001.bin").unlink()
    (data / "new.bin").write_bytes(b"new")
    report = proj.run_json("status")
    changes = report["data"]
    assert isinstance(changes, list) and len(changes) == 1
    assert changes[0]["change"] == "modified" and changes[0]["path"] == "raw/images"
    expected = sorted([*edited, "raw/images/nested/img001.bin", "raw/images/new.bin"])
    assert changes[0]["files"] == expected
    text = proj.run("status").stdout
    assert all(f"        {rel}\n" in text for rel in expected), text
    assert "modified:" in proj.dvc("status").stdout  # DVC sees the same change


def test_data_add_refuses_a_fifo_inside_the_directory(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"README": "x\n"})
    proj.write("d/a.txt", "a\n")  # not in git: the native add, not DVC's
    os.mkfifo(proj.path / "d" / "pipe")
    proc = proj.run("data", "add", "d", timeout=60)  # a blocking open would hang here
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert proc.stderr.startswith("mlbuild: error: ") and "d/pipe" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (proj.path / "d.dvc").exists()


def test_a_lost_object_is_seen_although_the_directory_was_complete_before(
        tmp_path: Path) -> None:
    proj = _tree_project(tmp_path)
    assert proj.run("run").returncode == 0
    for _ in range(2):  # the second answers from the completeness memo
        assert proj.run_json("status")["up_to_date"] is True
    manifest = json.loads(_objects(proj)[str(lock_out(proj)["md5"])].read_bytes())
    lost = _objects(proj)[manifest[7]["md5"]]
    lost.unlink()
    reasons = [r for s in proj.run_json("status")["stages"] for r in s["reasons"]]
    assert reasons == ["output 'many' not in cache"]
    assert "not in cache" in proj.dvc("status").stdout  # DVC agrees
    rebuilt = proj.run("run")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert lost.is_file()
    assert proj.run_json("status")["up_to_date"] is True


def test_a_build_writes_every_outputs_gitignore_entry(tmp_path: Path) -> None:
    stages = "".join(f"  s{i}:\n    cmd: echo {i} > out{i}.txt\n    outs: [out{i}.txt]\n"
                     f"  t{i}:\n    cmd: mkdir -p sub && echo {i} > sub/o{i}.txt\n"
                     f"    outs: [sub/o{i}.txt]\n" for i in range(12))
    proj = new_project(tmp_path / "p", {"dvc.yaml": "stages:\n" + stages})
    built = proj.run("run", "-j", "4")
    assert built.returncode == 0, built.stderr + built.stdout
    root_entries = (proj.path / ".gitignore").read_text().splitlines()
    assert sorted(root_entries) == sorted(f"/out{i}.txt" for i in range(12))
    sub_entries = (proj.path / "sub" / ".gitignore").read_text().splitlines()
    assert sorted(sub_entries) == sorted(f"/o{i}.txt" for i in range(12))
    untracked = proj.git("status", "--porcelain", "--untracked-files=all").stdout
    assert ".txt" not in untracked, untracked  # git sees no output
    assert_dvc_up_to_date(proj)


def test_data_add_leaves_autostage_and_git_tracked_paths_to_dvc(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"tracked/a.txt": "in git\n"})
    assert proj.dvc("config", "core.autostage", "true").returncode == 0
    proj.write("d/a.txt", "a\n")
    assert proj.run("data", "add", "d").returncode == 0
    staged = proj.git("diff", "--cached", "--name-only").stdout.split()
    assert "d.dvc" in staged and ".gitignore" in staged  # DVC staged them, as configured
    refused = proj.run("data", "add", "tracked")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert not (proj.path / "tracked.dvc").exists()  # DVC's refusal: git tracks it
