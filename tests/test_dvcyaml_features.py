"""dvc.yaml features under `mlbuild run`, each checked for what DVC would do with it.

Templating (vars, ${}, foreach, matrix), wdir, params files, frozen, always_changed, persist,
cache: false, metrics and plots, directory outputs, and the reasons `mlbuild status` gives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import Project
from tests.scenario import (
    assert_dvc_up_to_date,
    cache_object,
    dvc_status,
    lock,
    md5,
    new_project,
    outcomes,
    run_cache,
    scenario,
    stale,
)

COUNTED = """\
stages:
  copy:
    cmd: echo run >> .dvc/tmp/counter && cp src.txt out.txt
    deps:
      - src.txt
    params:
      - lr
    outs:
      - out.txt
"""


def _counter(proj: Project) -> int:
    path = proj.path / ".dvc" / "tmp" / "counter"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _counted(dest: Path) -> Project:
    return new_project(dest, {"dvc.yaml": COUNTED, "src.txt": "v1\n", "params.yaml": "lr: 1\n"})


# --- templating ------------------------------------------------------------------------------

def test_vars_interpolate_params_yaml_custom_file_and_inline_values(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "templating")
    assert outcomes(proj)["tmpl"] == "ran"
    assert proj.read("tmpl.txt") == "hello lin 0.1 5\n"
    entry = lock(proj)["tmpl"]
    assert entry["cmd"] == "echo hello lin 0.1 5 > tmpl.txt"  # dvc.lock records the resolved cmd
    assert entry["params"] == {"params.yaml": {"lr": 0.1, "model.name": "lin"}}


def test_foreach_over_list_and_dict_and_matrix_name_their_stages(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "templating")
    names = {"tmpl", "each@a", "each@b", "region@us", "region@eu",
             "mat@1-p", "mat@1-q", "mat@2-p", "mat@2-q"}
    result = outcomes(proj)
    assert set(result) == names
    assert set(result.values()) == {"ran"}
    assert set(lock(proj)) == names
    assert proj.read("each_b.txt") == "b\n"
    assert proj.read("region_eu.txt") == "hello lin 0.1 5\neu 2\n"
    assert proj.read("mat_2_q.txt") == "2q\n"
    # one generated stage can be targeted by its full name
    (proj.path / "region_us.txt").unlink()
    assert outcomes(proj, "region@us") == {"tmpl": "up-to-date", "region@us": "restored"}
    assert proj.read("region_us.txt") == "hello lin 0.1 5\nus 1\n"


def test_changed_template_values_rebuild_what_uses_them(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "templating")
    outcomes(proj)
    proj.write("params.yaml", "lr: 0.1\nmodel:\n  name: forest\n")
    reasons = stale(proj)
    assert set(reasons) == {"tmpl"}
    assert "command changed" in reasons["tmpl"]
    assert any("model.name" in r for r in reasons["tmpl"])
    result = outcomes(proj)
    assert result["tmpl"] == result["region@us"] == result["region@eu"] == "ran"
    assert result["each@a"] == result["mat@1-p"] == "up-to-date"
    # a custom vars file is re-read when it changes
    proj.write("vars/custom.yaml", "extra:\n  size: 6\n")
    assert stale(proj) == {"tmpl": ["command changed"]}
    assert outcomes(proj)["tmpl"] == "ran"
    assert proj.read("tmpl.txt") == "hello forest 0.1 6\n"


def test_stage_vars_file_is_read_from_the_wdir_and_reread_on_change(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {
        "dvc.yaml": "stages:\n  greet:\n    wdir: sub\n    vars:\n      - words.yaml\n"
                    "    cmd: echo ${word} > out.txt\n    outs:\n      - out.txt\n",
        "sub/words.yaml": "word: hi\n",
    })
    outcomes(proj)
    assert proj.read("sub/out.txt") == "hi\n"
    proj.write("sub/words.yaml", "word: bye\n")
    assert stale(proj) == {"greet": ["command changed"]}
    assert outcomes(proj) == {"greet": "ran"}
    assert proj.read("sub/out.txt") == "bye\n"


# --- wdir and params files -------------------------------------------------------------------

def test_wdir_runs_there_and_lock_paths_are_relative_to_it(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "wdir")
    assert outcomes(proj) == {"sub": "ran"}
    assert proj.read("sub/here.txt") == "sub\n"
    assert proj.read("build/out.txt") == "inner\ntop\n"
    entry = lock(proj)["sub"]
    assert [d["path"] for d in entry["deps"]] == ["../top.txt", "in.txt"]
    assert entry["params"] == {"params.yaml": {"n": 1}}  # sub/params.yaml, relative to wdir
    assert [o["path"] for o in entry["outs"]] == ["../build", "here.txt"]
    assert entry["outs"][0]["md5"].endswith(".dir")
    assert "/build" in proj.read(".gitignore").splitlines()
    assert "/here.txt" in proj.read("sub/.gitignore").splitlines()
    proj.write("sub/params.yaml", "n: 2\n")
    assert any("'n'" in r for r in stale(proj)["sub"])


def test_params_from_other_files_whole_files_json_and_toml(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "params_files")
    outcomes(proj)
    params = lock(proj)["cparams"]["params"]
    assert list(params) == ["params.yaml", "custom.yaml", "other.yaml", "p.json", "p.toml"]
    # YAML 1.2 scalars, as DVC reads them: 1e-3 is a float, yes/on are strings
    assert params["params.yaml"] == {
        "flag": "yes", "lr": 0.001, "mode": "on", "name": "1e-3", "small": 1e-05}
    assert params["custom.yaml"] == {"a.b": 3}
    assert params["other.yaml"] == {"w": 1, "nested": {"z": [1, 2], "q": "yes"}}
    assert params["p.json"] == {"j": 1}
    assert params["p.toml"] == {"t.u": 1}
    # keys the stage does not declare do not matter
    proj.write("custom.yaml", "a:\n  b: 3\n  c: 40\n")
    proj.write("p.json", '{"j": 1, "k": 20}\n')
    proj.write("p.toml", '[t]\nu = 1\nv = "changed"\n')
    assert stale(proj) == {}
    changes = [
        ("custom.yaml", "a:\n  b: 30\n  c: 40\n", "a.b"),
        ("other.yaml", "w: 1\nnested:\n  z: [1, 2]\n  q: 'yes'\nadded: 1\n", "added"),
        ("p.json", '{"j": 2, "k": 20}\n', "j"),
        ("p.toml", '[t]\nu = 2\nv = "changed"\n', "t.u"),
        ("params.yaml", proj.read("params.yaml").replace("flag: yes", "flag: no"), "flag"),
    ]
    for rel, text, key in changes:
        before = proj.read(rel)
        proj.write(rel, text)
        reasons = stale(proj)["cparams"]
        assert any(f"'{key}'" in r for r in reasons), (rel, reasons)
        proj.write(rel, before)
    assert stale(proj) == {}


# --- frozen, always_changed, persist, cache: false -------------------------------------------

def test_frozen_stage_never_runs_even_when_its_deps_change(tmp_path: Path) -> None:
    proj = _counted(tmp_path / "p")
    proj.write("dvc.yaml", COUNTED + "  down:\n    cmd: cat out.txt > down.txt\n"
               "    deps:\n      - out.txt\n    outs:\n      - down.txt\n")
    outcomes(proj)
    proj.write("dvc.yaml", proj.read("dvc.yaml").replace(
        "  copy:\n", "  copy:\n    frozen: true\n"))
    proj.write("src.txt", "v2 changed\n")
    proj.write("params.yaml", "lr: 2\n")
    assert outcomes(proj) == {"copy": "frozen", "down": "up-to-date"}
    assert proj.read("out.txt") == "v1\n"
    assert _counter(proj) == 1
    report = proj.run_json("status")
    assert report["up_to_date"] is True
    assert dvc_status(proj) == {}
    # like DVC, a frozen stage's outputs are still checked: a modified one is re-recorded
    proj.write("out.txt", "edited by hand\n")
    assert stale(proj) == {"copy": ["output 'out.txt' modified"],
                           "down": ["dependency 'out.txt' modified"]}
    assert outcomes(proj) == {"copy": "frozen", "down": "ran"}
    assert (_counter(proj), proj.read("down.txt")) == (1, "edited by hand\n")
    assert lock(proj)["copy"]["outs"][0]["md5"] == md5(proj, "out.txt")
    assert_dvc_up_to_date(proj)
    # ... and a missing one is an error (dvc repro fails too), not a silent rebuild
    (proj.path / "out.txt").unlink()
    proc = proj.run("run")
    assert proc.returncode == 1
    assert "frozen" in proc.stderr
    assert "out.txt" in proc.stderr
    assert _counter(proj) == 1


def test_always_changed_stage_runs_every_time(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "always")
    assert outcomes(proj) == {"stamp": "ran", "steady": "ran"}
    assert outcomes(proj) == {"stamp": "ran", "steady": "up-to-date"}
    assert proj.read("stamp.txt").strip() == "2"
    assert stale(proj) == {"stamp": ["always changed"]}


def test_persist_output_is_not_deleted_before_the_run(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "persist")
    outcomes(proj)
    proj.write("src.txt", "two\n")
    assert outcomes(proj) == {"log": "ran"}
    assert proj.read("log.txt") == "one\ntwo\n"
    assert lock(proj)["log"]["outs"][0]["md5"] == md5(proj, "log.txt")
    assert outcomes(proj, "--force") == {"log": "ran"}
    assert proj.read("log.txt") == "one\ntwo\ntwo\n"
    assert run_cache(proj) == {}  # DVC never run-caches a stage with persistent outputs


def test_cache_false_outputs_are_locked_but_not_cached_or_ignored(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "nocache")
    outcomes(proj)
    outs = {o["path"]: o for o in lock(proj)["copy"]["outs"]}
    assert outs["copy.txt"]["md5"] == md5(proj, "copy.txt")
    assert outs["kept.txt"]["md5"] == md5(proj, "kept.txt")
    ignored = proj.read(".gitignore").splitlines()
    assert "/kept.txt" in ignored
    assert "/copy.txt" not in ignored
    assert cache_object(proj, md5(proj, "kept.txt")).is_file()
    assert not cache_object(proj, md5(proj, "copy.txt")).exists()
    assert run_cache(proj) == {}  # DVC skips the run-cache when a plain output is uncached
    assert stale(proj) == {}  # an uncached output need not be in the cache
    (proj.path / "copy.txt").unlink()
    assert stale(proj) == {"copy": ["output 'copy.txt' deleted"]}
    assert outcomes(proj) == {"copy": "ran"}  # nothing to restore it from
    assert proj.read("copy.txt") == "uncached-content\n"


# --- metrics, plots, cmd lists, environment, directories -------------------------------------

def test_metrics_plots_command_list_and_stage_environment(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "metrics_plots")
    assert outcomes(proj) == {"evaluate": "ran"}
    assert json.loads(proj.read("metrics.json")) == {"acc": 0.5}
    assert proj.read("plot.csv") == "x,y\n1,2\n3,4\n"
    assert proj.read("env.txt") == "evaluate\nroot-ok\n"  # DVC_STAGE and DVC_ROOT set
    entry = lock(proj)["evaluate"]
    assert isinstance(entry["cmd"], list)
    assert len(entry["cmd"]) == 4
    assert [o["path"] for o in entry["outs"]] == ["env.txt", "metrics.json", "plot.csv"]
    ignored = proj.read(".gitignore").splitlines()
    assert {"/env.txt", "/plot.csv"} <= set(ignored)
    assert "/metrics.json" not in ignored
    # an uncached metric does not stop DVC from run-caching the stage; it is cached for it
    assert len(run_cache(proj)) == 1
    assert cache_object(proj, md5(proj, "metrics.json")).is_file()


def test_restored_uncached_metric_is_a_private_copy_even_with_symlink_cache(
        tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "metrics_plots")
    assert proj.dvc("config", "cache.type", "symlink").returncode == 0
    outcomes(proj)
    for rel in ("metrics.json", "env.txt"):
        (proj.path / rel).unlink()
    assert outcomes(proj) == {"evaluate": "restored"}
    assert (proj.path / "env.txt").is_symlink()  # cached outputs follow cache.type
    assert not (proj.path / "metrics.json").is_symlink()  # git tracks this one
    assert json.loads(proj.read("metrics.json")) == {"acc": 0.5}
    assert dvc_status(proj) == {}


def test_directory_output_is_a_dir_manifest_in_the_cache(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "dirout")
    assert outcomes(proj) == {"split": "ran", "count": "ran"}
    out = lock(proj)["split"]["outs"][0]
    assert out["path"] == "data/parts"
    assert out["md5"].endswith(".dir")
    assert out["nfiles"] == 2
    assert out["size"] == (proj.path / "data/parts/a.txt").stat().st_size + 2
    manifest = cache_object(proj, out["md5"])
    assert manifest.is_file()
    assert json.loads(manifest.read_text()) == [
        {"md5": md5(proj, "data/parts/a.txt"), "relpath": "a.txt"},
        {"md5": md5(proj, "data/parts/nested/b.txt"), "relpath": "nested/b.txt"},
    ]
    assert cache_object(proj, md5(proj, "data/parts/nested/b.txt")).is_file()
    assert lock(proj)["count"]["deps"][0]["md5"] == out["md5"]
    proj.write("data/parts/new.txt", "new\n")
    reasons = stale(proj)
    assert reasons == {"split": ["output 'data/parts' modified"],
                       "count": ["dependency 'data/parts' modified"]}


def test_dvcignored_files_are_left_out_of_directory_hashes(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "dvcignore")
    outcomes(proj)
    out = lock(proj)["collect"]["outs"][0]
    assert out["nfiles"] == 1  # only a.txt: not junk.tmp, scratch/ or .git/
    assert json.loads(cache_object(proj, out["md5"]).read_text()) == [
        {"md5": md5(proj, "out/a.txt"), "relpath": "a.txt"}]
    proj.write("out/more.tmp", "ignored too\n")
    proj.write("out/scratch/y.txt", "and this\n")
    assert stale(proj) == {}
    proj.write("out/b.txt", "not ignored\n")
    assert set(stale(proj)) == {"collect", "use"}


def test_executable_output_is_locked_as_such_and_restored_executable(tmp_path: Path) -> None:
    proj = new_project(tmp_path / "p", {
        "dvc.yaml": "stages:\n  tool:\n    cmd: cp src.sh tool.sh && chmod +x tool.sh\n"
                    "    deps:\n      - src.sh\n    outs:\n      - tool.sh\n",
        "src.sh": "#!/bin/sh\necho hi\n",
    })
    outcomes(proj)
    assert lock(proj)["tool"]["outs"][0]["isexec"] is True
    (proj.path / "tool.sh").unlink()
    assert outcomes(proj) == {"tool": "restored"}
    assert os.access(proj.path / "tool.sh", os.X_OK)


# --- staleness reasons -----------------------------------------------------------------------

def test_changed_command_makes_the_stage_stale(tmp_path: Path) -> None:
    proj = _counted(tmp_path / "p")
    outcomes(proj)
    proj.write("dvc.yaml", COUNTED.replace("cp src.txt out.txt", "cat src.txt > out.txt"))
    assert stale(proj) == {"copy": ["command changed"]}
    assert "changed command" in json.dumps(dvc_status(proj))
    assert outcomes(proj) == {"copy": "ran"}
    assert _counter(proj) == 2


def test_deleted_output_is_restored_without_running(tmp_path: Path) -> None:
    proj = _counted(tmp_path / "p")
    outcomes(proj)
    (proj.path / "out.txt").unlink()
    assert stale(proj) == {"copy": ["output 'out.txt' deleted"]}
    assert outcomes(proj) == {"copy": "restored"}
    assert proj.read("out.txt") == "v1\n"
    assert _counter(proj) == 1
    assert_dvc_up_to_date(proj)


def test_status_reasons_name_the_dep_param_and_output(tmp_path: Path) -> None:
    proj = _counted(tmp_path / "p")
    outcomes(proj)
    proj.write("src.txt", "v2 changed\n")
    proj.write("params.yaml", "lr: 2\n")
    proj.write("out.txt", "tampered with\n")
    reasons = stale(proj)["copy"]
    assert len(reasons) == 3, reasons
    assert "src.txt" in reasons[0]
    assert "'lr'" in reasons[1]
    assert "out.txt" in reasons[2]


def test_stage_with_only_params_is_not_always_changed(tmp_path: Path) -> None:
    proj = scenario(tmp_path / "p", "paramsonly")
    assert outcomes(proj) == {"show": "ran"}
    assert outcomes(proj) == {"show": "up-to-date"}
    assert stale(proj) == {}
    proj.write("params.yaml", "lr: 0.7\n")
    reasons = stale(proj)["show"]
    assert reasons[0] == "command changed"
    assert "'lr'" in reasons[1]
