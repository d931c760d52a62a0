"""Regressions found by review and by trying the tool as a new user."""

from __future__ import annotations

import json

from tests.conftest import Project


def _pipeline(project: Project) -> None:
    project.write("dvc.yaml", """
        stages:
          prep:
            cmd: mkdir -p out && echo a > out/a.txt
            outs: [out]
          use:
            cmd: cat out/a.txt > used.txt && echo used >> used.txt
            deps: [out/a.txt]
            outs: [used.txt]
    """)


def test_a_misspelt_dependency_inside_an_upstream_output_fails_the_stage(
        project: Project) -> None:
    _pipeline(project)
    assert project.run("run").returncode == 0
    project.write("dvc.yaml", project.read("dvc.yaml").replace("deps: [out/a.txt]",
                                                                "deps: [out/b.txt]"))
    proc = project.run("run")
    assert proc.returncode == 1
    assert "dependency 'out/b.txt' does not exist" in proc.stderr
    assert "'prep'" in proc.stderr  # the stage that should have produced it


def test_a_lost_cache_object_is_committed_again_and_push_refuses_until_then(
        project: Project, tmp_path: object) -> None:
    _pipeline(project)
    assert project.run("run").returncode == 0
    lock = project.read("dvc.lock")
    md5 = lock.split("path: used.txt")[1].split("md5: ")[1].split()[0]
    obj = project.path / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    obj.chmod(0o644)
    obj.unlink()
    remote = project.path.parent / "remote"
    remote.mkdir()
    assert project.dvc("remote", "add", "-d", "store", str(remote)).returncode == 0
    refused = project.run("push")
    assert refused.returncode == 1
    assert "used.txt" in refused.stderr and "not in the local cache" in refused.stderr
    assert not any(remote.rglob(md5[2:]))
    report = json.loads(project.run("run", "--json").stdout)
    assert {s["stage"]: s["outcome"] for s in report["stages"]}["use"] == "restored"
    assert obj.read_bytes() == (project.path / "used.txt").read_bytes()
    assert project.run_json("status")["up_to_date"] is True
    assert project.run("push").returncode == 0


def test_an_output_inside_tracked_data_is_bad_input(project: Project) -> None:
    project.write("raw/a.txt", "a\n")
    assert project.dvc("add", "raw").returncode == 0
    project.write("dvc.yaml", """
        stages:
          bad:
            cmd: echo b > raw/b.txt
            outs: [raw/b.txt]
    """)
    proc = project.run("run")
    assert proc.returncode == 2
    assert "overlaps 'raw'" in proc.stderr and "raw.dvc" in proc.stderr
    assert not (project.path / "raw/b.txt").exists()


def test_settings_in_mlbuild_yaml_answer_adoption_warnings(project: Project) -> None:
    project.write("dvc.yaml", """
        stages:
          fetch:
            cmd: python -c "import os; open('o.txt','w').write(os.environ.get('MY_TOKEN', ''))"
            outs: [o.txt]
    """)
    report = json.loads(project.run("run", "--json", env={"MY_TOKEN": "x"}).stdout)
    assert any("MY_TOKEN" in w for w in report["stages"][0]["warnings"])
    project.write("mlbuild.yaml", """
        stages:
          fetch: {env: [MY_TOKEN]}
    """)
    report = json.loads(project.run("run", "--json", "--force", env={"MY_TOKEN": "x"}).stdout)
    assert report["stages"][0]["warnings"] == []


def test_verbose_short_flag_works_after_the_command(project: Project) -> None:
    _pipeline(project)
    proc = project.run("run", "nope", "-v")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("mlbuild: error: unknown stage")


def test_a_hand_edit_of_generated_params_is_reported(example_built: Project) -> None:
    params = example_built.path / "params.yaml"
    params.write_text(params.read_text().replace("learning_rate: 0.1", "learning_rate: 0.2"))
    status = example_built.run("status")
    assert "params.yaml was edited by hand" in status.stderr
    run = example_built.run("run")
    assert run.returncode == 0 and "params.yaml was edited by hand" in run.stderr
    assert "learning_rate: 0.1" in example_built.read("params.yaml")  # configs/ wins
    assert "edited by hand" not in example_built.run("status").stderr


def test_verify_checks_out_frozen_outputs_instead_of_failing(project: Project) -> None:
    project.write("dvc.yaml", """
        stages:
          ext:
            cmd: echo external > ext.txt
            outs: [ext.txt]
          use:
            cmd: cat ext.txt > use.txt
            deps: [ext.txt]
            outs: [use.txt]
    """)
    assert project.run("run").returncode == 0
    project.write("dvc.yaml", project.read("dvc.yaml").replace(
        "    outs: [ext.txt]", "    outs: [ext.txt]\n    frozen: true"))
    assert project.run("run").returncode == 0
    project.git("add", "-A")
    project.git("commit", "-qm", "frozen")
    proc = project.run("verify", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
