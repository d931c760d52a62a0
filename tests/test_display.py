"""What people see: the live display in a real terminal, and how a restored stage is named."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Project, _env
from tests.scenario import new_project

SLOW = {
    "dvc.yaml": """
        stages:
          slow:
            cmd: python -c "import time; time.sleep(3); open('out.txt', 'w').write('x')"
            outs: [out.txt]
          copy:
            cmd: cp out.txt copy.txt
            deps: [out.txt]
            outs: [copy.txt]
    """,
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _in_terminal(proj: Project, *args: str) -> tuple[int, str]:
    """Run mlbuild with its stdout and stderr on a pseudo-terminal; return code and text."""
    leader, follower = pty.openpty()
    env = _env({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    proc = subprocess.Popen([sys.executable, "-m", "mlbuild", *args], cwd=proj.path, env=env,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=60), ANSI.sub("\n", b"".join(chunks).decode(errors="replace"))


def test_live_display_ticks_for_the_running_stage_and_shows_progress(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", SLOW)
    code, text = _in_terminal(proj, "run", "-j", "1")
    assert code == 0, text
    shown = [float(t) for t in re.findall(r"running\s+slow\s+(\d+\.\d)s", text)]
    assert shown, text
    assert max(shown) >= 1.0  # the clock moved while the stage ran, not only at its end
    assert "0/2 stage(s)" in text and "1/2 stage(s)" in text  # the progress bar's count


UPPER = {
    "src.txt": "abc\n",
    "dvc.yaml": """
        stages:
          upper:
            cmd: python -c "open('out.txt', 'w').write(open('src.txt').read().upper())"
            deps: [src.txt]
            outs: [out.txt]
    """,
}


def _restored(proj: Project) -> tuple[str, str]:
    """Outcome and message of the stage 'upper' in `mlbuild run --json`."""
    report = json.loads(proj.run("run", "--json").stdout)
    (stage,) = report["stages"]
    return stage["outcome"], stage["message"]


def test_a_restored_stage_says_how_it_was_restored(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", UPPER)
    assert proj.run("run").returncode == 0
    # the output is in place but its cache copy was lost: it is stored again
    md5 = hashlib.md5(b"ABC\n").hexdigest()
    obj = proj.path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.chmod(0o644)
    obj.unlink()
    assert _restored(proj) == ("restored", "outputs re-stored in the cache")
    assert obj.is_file()
    # the output was deleted: dvc.lock is the record and the output is checked out
    (proj.path / "out.txt").unlink()
    assert _restored(proj) == ("restored", "checked out from the cache")
    (proj.path / "out.txt").unlink()
    human = proj.run("run")
    assert "checked out from the cache" in human.stdout
    assert "run-cache" not in human.stdout


def test_a_stage_restored_from_the_run_cache_says_so(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", UPPER)
    assert proj.run("run").returncode == 0
    proj.write("src.txt", "xyz\n")
    assert proj.run("run").returncode == 0
    proj.write("src.txt", "abc\n")
    assert _restored(proj) == ("restored", "restored from run-cache")
    assert (proj.path / "out.txt").read_text() == "ABC\n"
