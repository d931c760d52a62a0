"""The project boundary: symlinks out of the project, special files, and what a hermetic stage
may touch (tool metadata, undeclared files, child interpreters, ctypes)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.scenario import empty_project, lock, new_project

STAGE_OUT_SUB = """
stages:
  make:
    cmd: mkdir -p ext/sub && echo new > ext/sub/file.txt
    outs: [ext/sub]
"""


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the project holding a user's file at sub/keep.txt."""
    outside = tmp_path / "elsewhere"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep.txt").write_text("precious\n")
    return outside


def _untouched(outside: Path) -> None:
    assert (outside / "sub" / "keep.txt").read_text() == "precious\n"
    assert sorted(p.name for p in outside.rglob("*")) == ["keep.txt", "sub"]


def _linked(tmp_path: Path, files: dict[str, str], link: str, target: Path) -> Project:
    proj = new_project(tmp_path / "p", files)
    (proj.path / link).parent.mkdir(parents=True, exist_ok=True)
    (proj.path / link).symlink_to(target)
    return proj


def test_output_through_a_symlink_out_of_the_project_is_refused(tmp_path: Path,
                                                                 elsewhere: Path) -> None:
    proj = _linked(tmp_path, {"dvc.yaml": STAGE_OUT_SUB}, "ext", elsewhere)
    for args in (("run",), ("status",)):
        proc = proj.run(*args)
        assert proc.returncode == 2, proc.stderr + proc.stdout
        assert ("mlbuild: error: stage 'make': outs path 'ext/sub' leads out of the project "
                f"through a symlink: it really is '{elsewhere.resolve() / 'sub'}'") in proc.stderr
        _untouched(elsewhere)


def test_declared_stage_output_through_a_symlink_is_refused(tmp_path: Path,
                                                            elsewhere: Path) -> None:
    proj = _linked(tmp_path, {"stages/make.yaml": "cmd: echo x > ext/sub/f\nouts: [ext/sub]\n"},
                   "ext", elsewhere)
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'ext/sub' leads out of the project through a symlink" in proc.stderr
    _untouched(elsewhere)


@pytest.mark.parametrize(("decl", "named"), [
    ("    deps: [ext/sub/keep.txt]\n", "dependency 'ext/sub/keep.txt'"),
    ("    wdir: ext\n", "wdir 'ext'"),
    ("    metrics: [ext/m.json]\n", "metrics path 'ext/m.json'"),
    ("    plots: [ext/p.csv]\n", "plots path 'ext/p.csv'"),
    ("    params: [{ext/params.yaml: []}]\n", "params file 'ext/params.yaml'"),
])
def test_every_kind_of_declared_path_is_resolved(tmp_path: Path, elsewhere: Path, decl: str,
                                                 named: str) -> None:
    dvcyaml = "stages:\n  s:\n    cmd: echo hi > o.txt\n    outs: [o.txt]\n" + decl
    proj = _linked(tmp_path, {"dvc.yaml": dvcyaml}, "ext", elsewhere)
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert f"stage 's': {named} leads out of the project through a symlink" in proc.stderr
    assert not (proj.path / "o.txt").exists()
    _untouched(elsewhere)


def test_tracked_data_through_a_symlink_is_refused_before_pull(tmp_path: Path,
                                                               elsewhere: Path) -> None:
    proj = new_project(tmp_path / "p", {"link/a.txt": "a\n", "dvc.yaml": STAGE_OUT_SUB.replace(
        "ext/sub", "o")})
    proj.git("rm", "-rq", "--cached", "link")
    assert proj.dvc("add", "link").returncode == 0
    shutil.rmtree(proj.path / "link")
    (proj.path / "link").symlink_to(elsewhere / "sub")
    for args in (("run",), ("pull",)):
        proc = proj.run(*args)
        assert proc.returncode == 2, proc.stderr + proc.stdout
        assert "link.dvc: tracked path 'link' leads out of the project" in proc.stderr
        _untouched(elsewhere)


def test_output_resolving_into_git_metadata_is_refused(tmp_path: Path) -> None:
    proj = _linked(tmp_path, {"dvc.yaml": STAGE_OUT_SUB.replace("ext/sub", "ext/hooks")},
                   "ext", Path(".git"))
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'ext/hooks' leads into tool metadata through a symlink" in proc.stderr
    assert not (proj.path / ".git" / "hooks" / "file.txt").exists()


def test_symlink_made_by_an_upstream_stage_is_refused_before_writing(tmp_path: Path,
                                                                     elsewhere: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": f"""
stages:
  linker:
    cmd: ln -s {elsewhere} ext && echo l > l.txt
    outs: [l.txt]
  make:
    cmd: echo new > ext/sub/keep.txt
    deps: [l.txt]
    outs: [ext/sub]
"""})
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "stage 'make': outs path 'ext/sub' leads out of the project" in proc.stderr
    _untouched(elsewhere)


def test_restore_never_follows_a_link_placed_after_the_build(tmp_path: Path,
                                                             elsewhere: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": STAGE_OUT_SUB})
    assert proj.run("run").returncode == 0
    shutil.rmtree(proj.path / "ext")
    (proj.path / "ext").symlink_to(elsewhere)
    shutil.rmtree(elsewhere / "sub")
    proc = proj.run("run")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "leads out of the project through a symlink" in proc.stderr
    assert list(elsewhere.iterdir()) == []  # nothing restored into it, no .gitignore


def test_output_linked_into_the_cache_is_accepted(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"in.txt": "new\n", "dvc.yaml": (
        "stages:\n  make:\n    cmd: cp in.txt o.txt\n    deps: [in.txt]\n    outs: [o.txt]\n")})
    assert proj.dvc("config", "cache.type", "symlink").returncode == 0
    assert proj.run("run").returncode == 0
    (proj.path / "o.txt").unlink()
    assert proj.run("run").returncode == 0
    assert (proj.path / "o.txt").is_symlink()  # restored as a link into the cache
    assert (proj.path / "o.txt").read_text() == "new\n"
    for args in (("status",), ("run",)):
        proc = proj.run(*args)
        assert proc.returncode == 0, proc.stderr + proc.stdout


# ---- special files (issue 9 item 10) -----------------------------------------------------

SPECIAL_DEP = """
stages:
  read:
    cmd: ls inputs > listing.txt
    deps: [inputs]
    outs: [listing.txt]
"""


@pytest.mark.parametrize("kind", ["fifo", "devzero", "fifo-top", "devzero-top"])
def test_special_files_in_dependencies_are_refused_not_read(tmp_path: Path, kind: str) -> None:
    top = kind.endswith("-top")
    proj = new_project(tmp_path / "p", {
        "inputs/a.txt": "a\n",
        "dvc.yaml": SPECIAL_DEP.replace("[inputs]", "[inputs/special]") if top else SPECIAL_DEP,
    })
    special = proj.path / "inputs" / "special"
    if kind.startswith("fifo"):
        os.mkfifo(special)
        named = "is a FIFO"
    else:
        special.symlink_to("/dev/zero")
        named = "is a character device"
    for args in (("status",), ("run",)):
        proc = proj.run(*args, timeout=60)  # today: hangs for ever
        assert proc.returncode == 2, proc.stderr + proc.stdout
        assert f"mlbuild: error: 'inputs/special' {named}" in proc.stderr
        assert "does not exist" not in proc.stderr
    assert not (proj.path / "listing.txt").exists()


def test_special_file_made_as_an_output_is_refused(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {"dvc.yaml": """
stages:
  make:
    cmd: mkdir out && mkfifo out/pipe && echo a > out/a.txt
    outs: [out]
"""})
    proc = proj.run("run", timeout=60)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'out/pipe' is a FIFO" in proc.stderr
    assert not (proj.path / "dvc.lock").exists() or "make" not in lock(proj)


# ---- hermetic stages: tool metadata and undeclared files (issue 8 items 4 and 5) -----------

def _hermetic(tmp_path: Path, code: str, files: dict[str, str] | None = None,
              cmd: str = "python stages/s.py") -> Project:
    """A project with one hermetic (declared) stage 's' running *code*, declaring out.txt."""
    proj = new_project(tmp_path / "p", {
        "victim.txt": "user data\n",
        "stages/s.yaml": f"cmd: {cmd}\nouts: [out.txt]\n",
        "stages/s.py": "import os\nimport subprocess\nimport sys\n\n" + code
                       + "\nopen('out.txt', 'w').write('ok')\n",
        **(files or {}),
    })
    proj.run("compile")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "compiled")
    return proj


def _meta_state(proj: Project) -> dict[str, str]:
    return {rel: proj.read(rel) for rel in (".dvc/config", "dvc.yaml", "params.yaml",
                                            "victim.txt") if (proj.path / rel).exists()}


@pytest.mark.parametrize("target", [".git/hooks/post-checkout", ".dvc/config", "dvc.yaml",
                                    "dvc.lock", "params.yaml", ".mlbuild/environment.yaml",
                                    ".dvc/tmp/mlbuild/shim/python", ".gitignore"])
def test_hermetic_python_write_to_tool_metadata_is_refused(tmp_path: Path, target: str) -> None:
    proj = _hermetic(tmp_path, f"open({target!r}, 'a').write('[core]\\n  evil = 1\\n')\n")
    before = {p: (proj.path / p).read_bytes() for p in (target,) if (proj.path / p).exists()}
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"writing '{target}' (tool metadata) is refused" in proc.stderr
    assert "PermissionError" in proj.read(".dvc/tmp/mlbuild/logs/s.err")
    path = proj.path / target
    if target in before and target != "dvc.lock":  # mlbuild itself writes dvc.lock
        assert path.read_bytes() == before[target]
    assert not path.exists() or b"evil" not in path.read_bytes()


def test_hermetic_shell_write_to_git_hooks_and_dvc_config_is_put_back(tmp_path: Path) -> None:
    cmd = ("sh -c 'printf \"#!/bin/sh\\ntouch pwned\\n\" > .git/hooks/post-checkout; "
           "chmod +x .git/hooks/post-checkout; echo \"  evil = 1\" >> .dvc/config; "
           "echo x > dvc.yaml; echo ok > out.txt'")
    proj = _hermetic(tmp_path, "", cmd=cmd)
    before = _meta_state(proj)
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "they were put back as they were before the run" in proc.stderr
    for rel in (".dvc/config", ".git/hooks/post-checkout", "dvc.yaml"):
        assert f"'{rel}'" in proc.stderr
    assert not (proj.path / ".git" / "hooks" / "post-checkout").exists()
    assert _meta_state(proj) == before
    assert "s" not in (lock(proj) if (proj.path / "dvc.lock").exists() else {})


@pytest.mark.parametrize("how", ["open('victim.txt', 'w').write('gone')",
                                 "os.remove('victim.txt')",
                                 "open('t', 'w').write('gone'); os.replace('t', 'victim.txt')",
                                 "os.truncate('victim.txt', 0)",
                                 "os.symlink('out.txt', 'l'); open('l', 'w').close(); "
                                 "os.rename('l', 'victim.txt')"])
def test_hermetic_python_overwrite_of_an_undeclared_file_is_refused(tmp_path: Path,
                                                                    how: str) -> None:
    proj = _hermetic(tmp_path, how + "\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert ("changing 'victim.txt', which it does not declare as an output, is refused "
            "(nothing was changed)") in proc.stderr
    assert proj.read("victim.txt") == "user data\n"
    assert not (proj.path / "victim.txt").is_symlink()


def test_refused_write_fails_the_stage_even_when_the_code_catches_it(tmp_path: Path) -> None:
    proj = _hermetic(tmp_path, "try:\n    open('victim.txt', 'w')\nexcept OSError:\n    pass\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "was refused 1 change(s) to files it does not declare" in proc.stderr
    assert proj.read("victim.txt") == "user data\n"


@pytest.mark.parametrize("state", ["committed", "edited", "untracked"])
def test_non_python_overwrite_is_put_back_and_the_stage_version_kept(tmp_path: Path,
                                                                     state: str) -> None:
    proj = _hermetic(tmp_path, "", cmd="sh -c 'echo damaged > victim.txt; rm notes.txt; "
                                       "echo ok > out.txt'", files={"notes.txt": "n\n"})
    expected = "user data\n"
    if state == "edited":  # the user's uncommitted edit is what must come back
        expected = proj.write("victim.txt", "edited, not committed\n").read_text()
    elif state == "untracked":
        proj.git("rm", "-q", "--cached", "victim.txt", "notes.txt")
        proj.write(".gitignore", "victim.txt\nnotes.txt\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "changed undeclared file(s) 'notes.txt', 'victim.txt'" in proc.stderr
    assert proj.read("victim.txt") == expected
    assert proj.read("notes.txt") == "n\n"
    kept = next((proj.path / ".dvc" / "tmp" / "mlbuild" / "guard").glob("*/changed/victim.txt"))
    assert kept.read_text() == "damaged\n"  # nothing is deleted: the stage's version is kept
    assert f"its version is kept in {kept.parent.relative_to(proj.path)}" in proc.stderr


def test_declared_outputs_temporaries_and_home_stay_writable(tmp_path: Path) -> None:
    proj = _hermetic(tmp_path, (
        "import tempfile\n"
        "os.makedirs('stages', exist_ok=True)\n"
        "open(os.path.join(os.environ['HOME'], 'cache.txt'), 'w').write('c')\n"
        "tempfile.NamedTemporaryFile(dir=os.environ['TMPDIR']).close()\n"
        "open('out.txt.tmp', 'w').write('o')\n"
        "os.replace('out.txt.tmp', 'out.txt')\n"
        "subprocess.run(['sh', '-c', 'echo shell >> out.txt'], check=True)\n"))
    report = proj.run_json("run")
    assert proj.outcomes(report) == {"s": "ran"}
    assert proj.read("victim.txt") == "user data\n"


# ---- ways round the hook (issue 8 item 6) ------------------------------------------------

@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening TCP socket on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.5)
        yield sock


def _no_connection(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except TimeoutError:
        return True
    conn.close()
    return False


def _connect_code(port: int) -> str:
    return f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"


@pytest.mark.parametrize("start", [
    "subprocess.run([sys.executable, '-c', CODE], env={})",
    "subprocess.run(['python3', '-c', CODE], env={'PATH': os.environ['PATH']})",
    "os.environ.pop('PYTHONPATH'); os.system(sys.executable + ' -c \"' + CODE + '\"')",
    "os.environ.clear(); subprocess.run([sys.executable, '-c', CODE])",
])
def test_child_interpreters_carry_the_hook_however_started(tmp_path: Path, start: str,
                                                           listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    proj = _hermetic(tmp_path, f"CODE = {_connect_code(port)!r}\n{start}\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"stage 's' is hermetic and used the network (getaddrinfo 127.0.0.1:{port})" \
        in proc.stderr
    assert _no_connection(listener)


@pytest.mark.parametrize("start", [
    "os.execve(sys.executable, [sys.executable, '-c', CODE], {'PATH': '/bin'})",
    "os.posix_spawn(sys.executable, [sys.executable, '-c', CODE], {})",
    "os.spawnve(os.P_WAIT, sys.executable, [sys.executable, '-c', CODE], {'PATH': '/bin'})",
])
def test_exec_with_a_scrubbed_environment_is_refused(tmp_path: Path, start: str,
                                                     listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    proj = _hermetic(tmp_path, f"CODE = {_connect_code(port)!r}\n{start}\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert ("starting a process with an environment that drops mlbuild's variables would "
            "escape its audit hook") in proc.stderr + proj.read(".dvc/tmp/mlbuild/logs/s.err")
    assert _no_connection(listener)


@pytest.mark.parametrize(("where", "flag"), [("python", "-I"), ("python", "-S"),
                                             ("shell", "-I"), ("shell", "-sE")])
def test_interpreter_flags_that_skip_the_hook_are_refused(tmp_path: Path, where: str, flag: str,
                                                          listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    code = _connect_code(port)
    if where == "python":
        proj = _hermetic(tmp_path, f"subprocess.run([sys.executable, {flag!r}, '-c', {code!r}])\n")
    else:
        proj = _hermetic(tmp_path, "", cmd=f"python {flag} -c \"{code}\" && python stages/s.py")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"starting Python with '{flag}' would escape its audit hook" in proc.stderr
    assert _no_connection(listener)


def test_libc_calls_through_ctypes_are_refused(tmp_path: Path) -> None:
    proj = _hermetic(tmp_path, "import ctypes\nlibc = ctypes.CDLL(None)\n"
                               "libc.fopen(b'victim.txt', b'w')\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "calling 'fopen' through ctypes is refused" in proc.stderr
    assert proj.read("victim.txt") == "user data\n"


def test_adopted_stage_child_with_fresh_environment_is_still_traced(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {
        "notes.txt": "n\n",
        "run.py": "import subprocess, sys\n"
                  "subprocess.run([sys.executable, '-c', 'open(\"notes.txt\").read()'], env={},"
                  " check=True)\nopen('o.txt', 'w').write('o')\n",
        "dvc.yaml": "stages:\n  s:\n    cmd: python run.py\n    deps: [run.py]\n"
                    "    outs: [o.txt]\n"})
    report = proj.run_json("run")
    [warning] = [w for s in report["stages"] for w in s["warnings"]]  # type: ignore[union-attr]
    assert "read undeclared input(s) 'notes.txt'" in warning


def test_dvc_tracked_data_is_put_back_from_the_cache_without_a_copy(tmp_path: Path) -> None:
    proj = empty_project(tmp_path / "p")
    big = os.urandom(65 * 1024 * 1024)  # over the copy budget: only the DVC cache has it
    (proj.path / "big.bin").write_bytes(big)
    assert proj.dvc("add", "big.bin").returncode == 0
    proj.write("stages/s.yaml", "cmd: sh -c 'echo damaged > big.bin; echo ok > out.txt'\n"
                                "deps: [big.bin]\nouts: [out.txt]\n")
    proc = proj.run("run")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "changed undeclared file(s) 'big.bin'; they were put back" in proc.stderr
    assert (proj.path / "big.bin").read_bytes() == big
    assert proj.dvc("status", "big.bin.dvc").stdout.strip().endswith("up to date.")


def test_data_add_through_a_symlink_out_names_the_real_place(tmp_path: Path,
                                                            elsewhere: Path) -> None:
    proj = _linked(tmp_path, {"README.md": "r\n"}, "ext", elsewhere)
    proc = proj.run("data", "add", "ext/sub")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert (f"cannot add: path 'ext/sub' leads out of the project through a symlink: it really "
            f"is '{elsewhere.resolve() / 'sub'}'") in proc.stderr
    _untouched(elsewhere)
    os.mkfifo(proj.path / "pipe")
    proc = proj.run("data", "add", "pipe", timeout=60)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "'pipe' is a FIFO" in proc.stderr


def test_persistent_output_under_a_symlink_inside_the_project_stays_writable(
        tmp_path: Path) -> None:
    proj = _hermetic(tmp_path, "open('models/log.txt', 'a').write('more\\n')\n",
                     files={"storage/models/log.txt": "first\n"})
    (proj.path / "models").symlink_to("storage/models")
    proj.write("stages/s.yaml", "cmd: python stages/s.py\n"
                                "outs: [out.txt, {models/log.txt: {persist: true}}]\n")
    proc = proj.run("run")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proj.read("storage/models/log.txt") == "first\nmore\n"
