"""The environment tracked as params: package versions per stage, reasons, and DVC agreeing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Project
from tests.scenario import dvc_status, load_yaml, new_project, stale

USES = """
import importlib.metadata

import fakepkg

open("a.txt", "w").write(fakepkg.__name__ + " " + importlib.metadata.version("fakepkg"))
"""
FILES = {
    "stages/uses.yaml": "cmd: python stages/uses.py\nouts: [a.txt]\n",
    "stages/uses.py": USES,
    "stages/plain.yaml": "cmd: python stages/plain.py\nouts: [b.txt]\n",
    "stages/plain.py": "open('b.txt', 'w').write('b')\n",
    "stages/after.yaml": "cmd: python stages/after.py\ndeps: [a.txt]\nouts: [c.txt]\n",
    "stages/after.py": "open('c.txt', 'w').write(open('a.txt').read().upper())\n",
}


def fake_distribution(site: Path, version: str) -> None:
    """A tiny installed distribution 'fakepkg' in *site* (a directory put on PYTHONPATH)."""
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("")
    info = site / f"fakepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakepkg\n")


def upgrade(site: Path, old: str, new: str) -> None:
    """What pip does to the metadata: a new dist-info directory with the new version."""
    info = site / f"fakepkg-{new}.dist-info"
    (site / f"fakepkg-{old}.dist-info").rename(info)
    meta = info / "METADATA"
    meta.write_text(meta.read_text().replace(f"Version: {old}", f"Version: {new}"))


def _setup(tmp_path: Path) -> tuple[Project, dict[str, str]]:
    site = tmp_path / "site"
    fake_distribution(site, "1.0")
    proj = new_project(tmp_path / "p", FILES)
    return proj, {"PYTHONPATH": str(site)}


def test_environment_file_records_the_packages_each_stage_imports(tmp_path: Path) -> None:
    proj, env = _setup(tmp_path)
    proc = proj.run("compile", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    envfile = load_yaml(proj.path / ".mlbuild/environment.yaml")
    assert {"python", "implementation", "platform"} <= set(envfile)
    assert envfile["stages"]["uses"]["packages"] == {"fakepkg": "1.0"}
    assert envfile["stages"]["plain"]["packages"] == {}
    assert envfile["stages"]["uses"]["hermetic"]["network"] is False
    dvcyaml = load_yaml(proj.path / "dvc.yaml")
    assert dvcyaml["stages"]["uses"]["params"] == [
        {".mlbuild/environment.yaml": ["implementation", "platform", "python", "stages.uses"]}]


def test_package_upgrade_makes_exactly_its_importers_stale(tmp_path: Path) -> None:
    proj, env = _setup(tmp_path)
    proc = proj.run("run", "-j", "1", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # the hermetic stage imports the package from the caller's PYTHONPATH, as recorded
    assert proj.read("a.txt") == "fakepkg 1.0"
    assert json.loads(proj.run("status", "--json", env=env).stdout)["up_to_date"] is True
    upgrade(tmp_path / "site", "1.0", "1.1")
    status = proj.run("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {s["stage"]: s["reasons"] for s in report["stages"] if s["stale"]} == {
        "uses": ["environment changed: fakepkg 1.0 -> 1.1"]}
    # plain DVC sees it too, once the environment file is rewritten
    assert proj.run("compile", env=env).returncode == 0
    assert set(dvc_status(proj)) == {"uses"}
    proc = proj.run("run", "--json", "-j", "1", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proj.outcomes(json.loads(proc.stdout)) == {
        "plain": "up-to-date", "uses": "ran", "after": "ran"}
    assert proj.read("a.txt") == "fakepkg 1.1"
    assert json.loads(proj.run("status", "--json", env=env).stdout)["up_to_date"] is True
    # without the package on the path, the stage is stale again
    assert stale(proj) == {"uses": ["environment changed: fakepkg deleted"]}


def test_hermetic_setting_change_is_a_reason(tmp_path: Path) -> None:
    proj, env = _setup(tmp_path)
    assert proj.run("run", "-j", "1", env=env).returncode == 0
    proj.write("stages/plain.yaml", "cmd: python stages/plain.py\nouts: [b.txt]\n"
                                    "hermetic: {threads: 2}\n")
    status = proj.run("status", "--json", env=env)
    report = json.loads(status.stdout)
    assert {s["stage"]: s["reasons"] for s in report["stages"] if s["stale"]} == {
        "plain": ["hermetic settings changed: threads 1 -> 2"]}


def test_verify_names_the_environment_difference(tmp_path: Path) -> None:
    proj, env = _setup(tmp_path)
    assert proj.run("run", "-j", "1", env=env).returncode == 0
    proj.git("add", "-A")
    proj.git("commit", "-qm", "built with fakepkg 1.0")
    upgrade(tmp_path / "site", "1.0", "1.1")
    proc = proj.run("verify", "--json", env=env)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    verdicts = {v["stage"]: v for v in report["stages"]}
    assert report["root_cause"] == "uses"
    assert verdicts["plain"]["status"] == "identical"
    assert verdicts["after"]["caused_by"] == "uses"
    assert ("environment differs from the one recorded in dvc.lock: fakepkg 1.0 -> 1.1"
            in verdicts["uses"]["hints"])
