"""Nothing recorded can make mlbuild write or commit outside the project: crafted directory
manifests, stages that turn their outputs into links leading out, malformed run-cache entries
(review findings 3, 4 and 7)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.scenario import cache_object, cached_objects, lock, new_project, run_cache

PIPELINE = """
stages:
  make:
    cmd: mkdir -p d && echo hi > d/f
    deps: [in.txt]
    outs: [d]
"""
CONTENT = b"escaped\n"


def _store(proj: Project, md5: str, body: bytes) -> None:
    path = cache_object(proj, md5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def crafted(proj: Project, rel: str, entry_md5: str | None = None) -> str:
    """A .dir object listing *rel* (its file object present) and a dvc.lock recording it as
    stage make's output 'd', as an attacker's commit would; returns the object's md5."""
    fmd5 = hashlib.md5(CONTENT).hexdigest()
    _store(proj, fmd5, CONTENT)
    body = json.dumps([{"md5": entry_md5 or fmd5, "relpath": rel}], sort_keys=True).encode()
    dmd5 = hashlib.md5(body).hexdigest() + ".dir"
    _store(proj, dmd5, body)
    inmd5 = hashlib.md5(b"x\n").hexdigest()
    proj.write("dvc.lock", f"""
        schema: '2.0'
        stages:
          make:
            cmd: mkdir -p d && echo hi > d/f
            deps:
            - path: in.txt
              hash: md5
              md5: {inmd5}
              size: 2
            outs:
            - path: d
              hash: md5
              md5: {dmd5}
              size: 8
              nfiles: 1
        """)
    return dmd5


def _project(tmp_path: Path) -> Project:
    return new_project(tmp_path / "deep" / "p", {"dvc.yaml": PIPELINE, "in.txt": "x\n"})


def _nothing_outside(tmp_path: Path) -> None:
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == CONTENT
               and "cache" not in p.parts]
    assert written == []


UNSAFE = ["../../escape.txt", "../escape.txt", "..", "a/../../x.txt", "a\\..\\..\\x.txt",
          "", ".", "./x.txt", "a//x.txt", "a/./x.txt", "a/"]


@pytest.mark.parametrize("rel", UNSAFE)
def test_run_never_restores_a_manifest_path_that_leaves_the_directory(tmp_path: Path,
                                                                      rel: str) -> None:
    proj = _project(tmp_path)
    dmd5 = crafted(proj, rel)
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"{dmd5[2:]}" in proc.stderr + proc.stdout
    assert f"unsafe path {json.dumps(rel)}" in proc.stderr + proc.stdout
    _nothing_outside(tmp_path)
    assert "Traceback" not in proc.stderr


def test_absolute_manifest_path_is_refused(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    target = tmp_path / "abs.txt"
    crafted(proj, str(target))
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"unsafe path \"{target}\"" in proc.stderr + proc.stdout
    assert not target.exists()


def test_manifest_entry_hash_that_is_a_path_is_refused(tmp_path: Path) -> None:
    """An entry's md5 names the object file: '../..' in it would read or write elsewhere."""
    proj = _project(tmp_path)
    crafted(proj, "f", entry_md5="ab/../../../../../../escape")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "is not an md5 hash" in proc.stderr + proc.stdout


def _tracked(tmp_path: Path, rel: str) -> tuple[Project, str]:
    """A committed raw.dvc pointing at a crafted directory object, its data not checked out."""
    proj = new_project(tmp_path / "deep" / "p", {"dvc.yaml": (
        "stages:\n  use:\n    cmd: ls raw > listing\n    deps: [raw]\n    outs: [listing]\n")})
    dmd5 = crafted(proj, rel)
    (proj.path / "dvc.lock").unlink()
    proj.write("raw.dvc", f"outs:\n- md5: {dmd5}\n  size: 8\n  nfiles: 1\n  hash: md5\n"
               "  path: raw\n")
    proj.write(".gitignore", "/raw\n")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "crafted data")
    return proj, dmd5


@pytest.mark.parametrize("command", [("run",), ("verify",)])
def test_tracked_data_with_an_unsafe_manifest_is_never_checked_out(tmp_path: Path,
                                                                  command: tuple[str]) -> None:
    """run's automatic checkout of .dvc-tracked data, and verify's seeding of its scratch
    cache and checkout, read the same manifest."""
    proj, dmd5 = _tracked(tmp_path, "../../escape.txt")
    proc = proj.run(*command)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "unsafe path \"../../escape.txt\"" in proc.stderr, proc.stderr
    assert dmd5[2:] in proc.stderr
    _nothing_outside(tmp_path)
    assert not list(Path(tempfile.gettempdir()).glob("escape.txt"))


def test_a_safe_nested_manifest_still_restores(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    crafted(proj, "sub/deeper/f.txt")
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (proj.path / "d/sub/deeper/f.txt").read_bytes() == CONTENT


def test_pull_never_hands_an_unsafe_manifest_to_dvc_checkout(tmp_path: Path) -> None:
    """DVC's own checkout writes d/../../escape.txt outside the project: pull stops first."""
    proj = _project(tmp_path)
    dmd5 = crafted(proj, "../../escape.txt")
    (tmp_path / "remote").mkdir()
    assert proj.dvc("remote", "add", "-d", "store", str(tmp_path / "remote")).returncode == 0
    proc = proj.run("pull")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "unsafe path \"../../escape.txt\"" in proc.stderr, proc.stderr
    assert dmd5[2:] in proc.stderr
    _nothing_outside(tmp_path)


def test_fsck_reports_and_repair_removes_an_unsafe_manifest(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    dmd5 = crafted(proj, "../../escape.txt")
    gc = proj.run("gc", "--force")
    assert gc.returncode == 1, gc.stderr + gc.stdout
    assert "unsafe path" in gc.stderr
    report = proj.run("data", "fsck")
    assert report.returncode == 1, report.stderr + report.stdout
    assert "unsafe path" in report.stdout and dmd5[2:] in report.stdout
    assert cache_object(proj, dmd5).exists()
    assert proj.run("data", "fsck", "--repair").returncode == 0
    assert not cache_object(proj, dmd5).exists()
    proc = proj.run("run")  # the stage is rebuilt instead
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (proj.path / "d/f").read_text() == "hi\n"
    _nothing_outside(tmp_path)


# -- finding 4: outputs re-checked after the stage ran --------------------------------------

@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the project."""
    path = tmp_path / "outside" / "secret"
    path.parent.mkdir()
    path.write_text("top secret\n")
    return path


def _two_runs(tmp_path: Path, out: str, second: str) -> tuple[Project, dict[str, object]]:
    first = "mkdir -p d && echo old > d/f" if out == "d" else "echo old > o"
    pipeline = f"stages:\n  make:\n    cmd: {first}\n    deps: [in.txt]\n    outs: [{out}]\n"
    proj = new_project(tmp_path / "p", {"dvc.yaml": pipeline, "in.txt": "x\n"})
    assert proj.run("run").returncode == 0
    before = lock(proj)
    proj.write("dvc.yaml", pipeline.replace(first, second))
    return proj, before


def _refused(proj: Project, secret: Path, before: dict[str, object], shown: str) -> None:
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"'{shown}' leads out of the project through a symlink" in proc.stderr, proc.stderr
    assert str(secret) in proc.stderr
    assert lock(proj) == before  # nothing recorded
    secret_md5 = hashlib.md5(secret.read_bytes()).hexdigest()
    assert not any(p.replace("/", "").endswith(secret_md5) for p in cached_objects(proj))
    assert all(str(secret) not in json.dumps(e) for e in run_cache(proj).values())
    assert secret.read_text() == "top secret\n"


def test_stage_that_makes_its_output_a_link_out_fails_and_puts_back(tmp_path: Path,
                                                                    secret: Path) -> None:
    proj, before = _two_runs(tmp_path, "o", f"rm -f o && ln -s {secret} o")
    _refused(proj, secret, before, "o")
    assert not (proj.path / "o").is_symlink()
    assert (proj.path / "o").read_text() == "old\n"  # the previous output is back


def test_new_output_that_is_a_link_out_is_removed(tmp_path: Path, secret: Path) -> None:
    proj = new_project(tmp_path / "p", {"in.txt": "x\n", "dvc.yaml": (
        f"stages:\n  make:\n    cmd: ln -s {secret} o\n    deps: [in.txt]\n    outs: [o]\n")})
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "'o' leads out of the project through a symlink" in proc.stderr
    assert not (proj.path / "o").is_symlink()
    assert not (proj.path / "dvc.lock").exists() or "make" not in lock(proj)


def test_link_out_inside_a_directory_output_fails(tmp_path: Path, secret: Path) -> None:
    """DVC follows a link inside a directory output and commits what it leads to."""
    proj, before = _two_runs(tmp_path, "d", f"rm -rf d && mkdir d && ln -s {secret} d/link")
    _refused(proj, secret, before, "d/link")
    assert (proj.path / "d/f").read_text() == "old\n"
    assert not (proj.path / "d/link").exists()


def test_link_out_deep_inside_a_directory_output_fails(tmp_path: Path, secret: Path) -> None:
    cmd = f"rm -rf d && mkdir -p d/a/b && ln -s {secret.parent} d/a/b/dir"
    proj, before = _two_runs(tmp_path, "d", cmd)
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "'d/a/b/dir' leads out of the project through a symlink" in proc.stderr
    assert lock(proj) == before


def test_link_inside_the_project_in_a_directory_output_is_kept(tmp_path: Path) -> None:
    proj, _ = _two_runs(tmp_path, "d", "rm -rf d && mkdir d && ln -s ../in.txt d/link")
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert lock(proj)["make"]["outs"][0]["nfiles"] == 1


# -- finding 7: malformed run-cache entries are skipped -------------------------------------

RC_PIPELINE = "stages:\n  s:\n    cmd: cp in.txt o.txt\n    deps: [in.txt]\n    outs: [o.txt]\n"
MALFORMED = [
    "outs:\n- md5: d41d8cd98f00b204e9800998ecf8427e\n",
    "outs:\n- path: o.txt\n",
    "outs:\n- path: o.txt\n  md5: 12\n",
    "outs:\n- path: [o.txt]\n  md5: d41d8cd98f00b204e9800998ecf8427e\n",
    "outs:\n- path: o.txt\n  md5: ../../../../escape\n",
    "outs:\n- null\n",
    "outs: o.txt\n",
    "outs: {path: o.txt}\n",
    "outs:\n- path: o.txt\n  md5: d41d8cd98f00b204e9800998ecf8427e\n  size: big\n",
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_run_cache_entry_is_skipped(tmp_path: Path, body: str) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": RC_PIPELINE, "in.txt": "x\n"})
    assert proj.run("run").returncode == 0
    entries = [p for p in (proj.path / ".dvc/cache/runs").rglob("*") if p.is_file()]
    assert len(entries) == 1
    entries[0].chmod(0o644)
    entries[0].write_text("cmd: cp in.txt o.txt\n" + body)
    (proj.path / "o.txt").unlink()
    (proj.path / "dvc.lock").unlink()
    proc = proj.run("run", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proj.outcomes(json.loads(proc.stdout)) == {"s": "ran"}
    assert (proj.path / "o.txt").read_text() == "x\n"
