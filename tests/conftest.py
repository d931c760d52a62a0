"""Shared fixtures: real CLI subprocesses in temporary git repositories with real DVC."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.zygote import Started, UnavailableError, Zygote

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FILES = ("configs", "stages", "data.dvc", "dvc-storage", "params.yaml", "dvc.yaml",
                 ".dvcignore", "mlbuild.yaml")
BIN = str(Path(sys.executable).parent)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    # no empty entry: it would put every process's working directory on sys.path
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("DVC_ROOT", None)
    env.pop("DVC_STAGE", None)
    env["DVC_NO_ANALYTICS"] = "1"
    env["COLUMNS"] = "200"
    # every command in its own interpreter: no resident server outlives a test (a stage or a
    # Kubeflow task calling the `mlbuild` script would start one); test_resident.py's own
    env["MLBUILD_SERVER"] = "0"
    extra = dict(extra or {})
    if "PYTHONPATH" in extra:  # added to, never replacing, the path to this checkout
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), extra.pop("PYTHONPATH")])
    env.update(extra)
    return env


# mlbuild's and DVC's commands run in processes forked from interpreters that have imported
# their start-up modules (tests/zygote.py): the same code, a new process each, without the
# interpreter's start-up each time; and the builds of one test process share one warm-start
# pool, as an experiment sweep's variants do. MLBUILD_TEST_FORK=0: a new interpreter for
# every command, a pool for every build.
_FORK = os.environ.get("MLBUILD_TEST_FORK", "1") != "0"
WARM_SHARE = "MLBUILD_WARM_SHARE"


@pytest.fixture(scope="session", autouse=True)
def _shared_warm_pool() -> Iterator[None]:
    """One warm-start pool for every build this test process runs (each of its interpreters
    imports a stage environment's packages once: pandas, scikit-learn and LightGBM for the
    example), stopped at the end. tests/test_warm.py checks a build's own pool."""
    if not _FORK or WARM_SHARE in os.environ:
        yield
        return
    directory = Path(tempfile.mkdtemp(prefix="mlbuild-warm-", dir="/tmp"))
    os.environ[WARM_SHARE] = f"{directory}:{os.getpid()}"
    try:
        yield
    finally:
        del os.environ[WARM_SHARE]
        for pidfile in directory.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


_DVC_START = ("dvc.cli", "dvc.cli.parser", "dvc.repo", "dvc.scm", "dvc.repo.plots", "dvc.lock",
              "ruamel.yaml", "dvc.repo.datasets", "dvc.config", "configobj", "dvc.dirs",
              "dvc.repo.index", "dvc.repo.stage", "dvc.rwlock", "dvc.utils.strictyaml",
              "dvc.daemon", "dvc.data_cloud", "dvc.cachemgr", "dvc_data.hashfile.db.local")


# the libraries that mlbuild's commands which score, test drift, serve or read the registry
# always import (pandas, scikit-learn, LightGBM, SciPy, GTO, matplotlib, FastAPI: 0.05-2
# CPU-seconds a command) are imported ahead by a second mlbuild zygote, which forks only
# those commands: forking from it costs every other command 20-130 ms more than from the
# lighter one (measured side by side: `status` 0.04 s against 0.06, `data status` 0.22 s
# against 0.35)
_LIBRARIES = ("numpy", "pandas", "pandera.pandas", "scipy.stats", "scipy.spatial",
              "sklearn.base", "sklearn.pipeline", "sklearn.linear_model", "sklearn.metrics",
              "sklearn.model_selection", "lightgbm", "gto.api", "matplotlib",
              "matplotlib.pyplot", "fastapi", "uvicorn", "lleaves")
LIBRARY_COMMANDS = ("monitor", "serve", "predict", "ct", "ui", "model")
WITH_LIBRARIES = "mlbuild+libraries"


@functools.cache
def _zygote(kind: str) -> Zygote:
    """mlbuild's zygote imports all of mlbuild (but the stages' sandbox hook), and DVC, Hydra
    and PyYAML, which its commands import (WITH_LIBRARIES: and _LIBRARIES); DVC's, what
    `dvc status` imports."""
    if kind == "dvc":
        return Zygote(kind, _DVC_START, _env())
    own = (".".join(p.relative_to(REPO).with_suffix("").parts)
           for p in sorted((REPO / "mlbuild").rglob("[a-z]*.py")) if "hook" not in p.parts)
    if kind != WITH_LIBRARIES:
        return Zygote("mlbuild", ("yaml", "hydra", "omegaconf", *_DVC_START, *own), _env())
    # OpenBLAS would start a thread per core when numpy is imported (and a zygote with
    # threads forks nothing): one, for the imports ahead; a command's own environment is
    # still its own (mlbuild's commands do no linear algebra big enough to thread)
    return Zygote("mlbuild", ("yaml", "hydra", "omegaconf", *_DVC_START, *_LIBRARIES, *own),
                  _env(), pinned={"OPENBLAS_NUM_THREADS": "1"})


def _kind(tool: str, args: tuple[str, ...], cwd: Path) -> str:
    """The zygote for `TOOL ARGS` in *cwd* (see _LIBRARIES). A build or verify of a project
    with data contracts goes to the one with libraries too: mlbuild checks contracts with
    pandera in its own process (a forced build of the example: 1.56 CPU-seconds from that
    zygote against 2.05, a no-op run 0.06 against 0.04)."""
    command = next((a for a in args if not a.startswith("-")), "")
    if tool != "mlbuild":
        return tool
    if command in LIBRARY_COMMANDS or (command in CONTRACT_COMMANDS and _has_contracts(cwd)):
        return WITH_LIBRARIES
    return tool


CONTRACT_COMMANDS = ("run", "verify")


def _has_contracts(cwd: Path) -> bool:
    """Whether the project's dvc.yaml names data contracts (meta: mlbuild: contracts)."""
    try:
        return "contracts:" in (cwd / "dvc.yaml").read_text(errors="replace")
    except OSError:
        return False


def _cli(tool: str, args: tuple[str, ...], cwd: Path, env: dict[str, str],
         timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m TOOL ARGS` in *cwd*, output captured as text: forked from the zygote
    _kind picks, else from the tool's own (lighter) zygote, else a new interpreter."""
    if _FORK:
        for kind in dict.fromkeys((_kind(tool, args, cwd), tool)):
            zygote = _zygote(kind)
            if zygote.usable(env, cwd):
                with contextlib.suppress(UnavailableError):
                    return zygote.run(list(args), cwd, env, timeout)
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


class Project:
    """A temporary project directory with helpers to drive the real CLIs in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`python -m mlbuild ARGS` in the project."""
        return _cli("mlbuild", args, self.path, _env(env), timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """`python -m mlbuild ARGS` started in the background (stdout and stderr piped)."""
        return subprocess.Popen([sys.executable, "-m", "mlbuild", *args], cwd=self.path,
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def start(self, *args: str) -> subprocess.Popen[str] | Started:
        """popen(), forked from the zygote when it can be (a server that loads a model
        imports scikit-learn, LightGBM and pandas: about 2 CPU-seconds in a new
        interpreter); its stdin is /dev/null."""
        zygote = _zygote(_kind("mlbuild", args, self.path)) if _FORK else None
        if zygote is not None and zygote.usable(_env(), self.path):
            with contextlib.suppress(UnavailableError):
                return zygote.start(list(args), self.path, _env())
        return self.popen(*args)

    def run_json(self, *args: str) -> dict[str, object]:
        """`mlbuild ARGS --json`, parsed; asserts success."""
        proc = self.run(*args, "--json")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return dict(json.loads(proc.stdout))

    def dvc(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Real DVC's CLI in the project."""
        return _cli("dvc", args, self.path, _env(), 300)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        """git in the project."""
        return subprocess.run(["git", *args], cwd=self.path, env=_env(), capture_output=True,
                              text=True, check=True)

    def write(self, rel: str, text: str) -> Path:
        """Write a file (dedented), creating parents."""
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def read(self, rel: str) -> str:
        """Read a project file."""
        return (self.path / rel).read_text()

    def outcomes(self, report: dict[str, object]) -> dict[str, str]:
        """stage -> outcome from a `run --json` report."""
        return {s["stage"]: s["outcome"] for s in report["stages"]}  # type: ignore[index, union-attr]


def _fresh_repo(path: Path) -> Project:
    """The real git init + dvc init in *path*."""
    path.mkdir(parents=True, exist_ok=True)
    proj = Project(path)
    proj.git("init", "-q")
    proj.git("config", "user.email", "test@example.com")
    proj.git("config", "user.name", "test")
    proc = proj.dvc("init", "-q")
    assert proc.returncode == 0, proc.stderr
    proj.dvc("config", "core.analytics", "false")
    return proj


@functools.cache
def _empty_repo() -> Path:
    """One freshly initialised repository per test process, copied for every project: dvc
    init and dvc config cost about a CPU-second, a copy a few milliseconds."""
    scratch = Path(tempfile.mkdtemp(prefix="mlbuild-empty-repo-"))
    atexit.register(shutil.rmtree, scratch, True)
    return _fresh_repo(scratch / "repo").path


def init_repo(path: Path) -> Project:
    """A git + DVC project at *path* (a copy of one made by git init + dvc init), empty."""
    if path.exists() and any(path.iterdir()):
        return _fresh_repo(path)  # files already there: initialise in place
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_empty_repo(), path, symlinks=True, dirs_exist_ok=True)
    return Project(path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty git + DVC project."""
    return init_repo(tmp_path / "proj")


STAGE_HOMES = Path(".dvc/tmp/mlbuild/home")  # each hermetic stage's HOME: caches it keeps


def _link_bytecode(src: str, dst: str) -> object:
    """copytree's copy function: bytecode in a stage's HOME is hard-linked (Python replaces a
    .pyc by renaming a new file over it, never in place), every other file is copied."""
    if f"{os.sep}pycache{os.sep}" in src:
        os.link(src, dst)
        return dst
    return shutil.copy2(src, dst)


def copy_tree(src: Path, dest: Path) -> None:
    """A private copy of a project directory (symlinks kept, mtimes preserved)."""
    shutil.copytree(src, dest, symlinks=True, copy_function=_link_bytecode)


def seed_stage_homes(dest: Path, homes: Path) -> None:
    """Give a project the stage HOMEs of an earlier build of the same stages: matplotlib's
    font list and the bytecode of the project's own modules, as on a machine where the project
    was built before. TMPDIRs are not carried over."""
    for home in homes.iterdir():
        shutil.copytree(home, dest / STAGE_HOMES / home.name, symlinks=True,
                        copy_function=_link_bytecode, ignore=shutil.ignore_patterns("tmp"))


def copy_example(dest: Path, homes: Path | None = None) -> Project:
    """The embedded example in a fresh git repository (no cache, no outputs); *homes*, when
    given, seeds its stage HOMEs (see seed_stage_homes)."""
    proj = init_repo(dest)
    for name in EXAMPLE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    shutil.copy2(REPO / ".dvc" / "config", dest / ".dvc" / "config")
    (dest / "data").mkdir(exist_ok=True)
    shutil.copy2(REPO / "data" / ".gitignore", dest / "data" / ".gitignore")
    shutil.copy2(REPO / ".gitignore", dest / ".gitignore")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "example")
    if homes is not None:
        seed_stage_homes(dest, homes)
    return proj


def shared_dir(factory: pytest.TempPathFactory) -> Path:
    """A directory all xdist workers of this run share (the parent of each worker's basetemp),
    or the basetemp without xdist."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on *path* between the processes of this run."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cold_build(root: Path) -> None:
    """Build a fresh copy of the example in root/example once per test run, recording its
    `mlbuild run --json` in root/run.json; the caller holds root's lock."""
    record = root / "run.json"
    if not record.exists():
        proj = copy_example(root / "example")
        proc = proj.run("run", "--json")
        record.write_text(json.dumps({"returncode": proc.returncode,
                                      "stdout": proc.stdout, "stderr": proc.stderr}))


def _cold_build_root(factory: pytest.TempPathFactory) -> Path:
    return shared_dir(factory) / "example-cold-build"


_BACKGROUND: list[threading.Thread] = []
# The longest tests (a cold build in verify's scratch space; two builds at once) start first
# among those that need the example's build, so that the two workers finish together.
LONGEST = ("test_verify_passes_on_the_example", "test_build_is_identical_across_directories")


def _start_cold_build(config: pytest.Config) -> None:
    """Start the example's cold build on a thread, holding its lock until it is done."""
    # the factory behind the tmp_path_factory fixture (xdist itself reads it the same way)
    root = _cold_build_root(config._tmp_path_factory)
    handle = open(root.with_suffix(".lock"), "a")  # noqa: SIM115 (the thread closes it)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another worker got there first and builds it
        handle.close()
        return

    def build() -> None:
        with handle:
            try:
                _cold_build(root)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    _BACKGROUND.append(threading.Thread(target=build, name="example-cold-build"))
    _BACKGROUND[-1].start()


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile mlbuild's own modules once, in the controller: with PYTHONDONTWRITEBYTECODE
    set (as on CI machines), every `mlbuild` subprocess of the suite would otherwise compile
    them again (installed packages are compiled at install; this editable checkout is not).

    A suite started in the background by a shell inherits SIGINT ignored, and so would every
    mlbuild it starts (Python keeps an ignored SIGINT ignored): the Ctrl-C tests need it back."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["MLBUILD_SERVER"] = "0"  # as in _env(), for what starts processes by itself
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        import compileall

        compileall.compile_dir(REPO / "mlbuild", quiet=1)


def _group_suffix(item: pytest.Item) -> None:
    """Give an item marked xdist_group the "@group" suffix xdist's loadgroup schedules by,
    where xdist's own hook could not: xdist 3.8 sets `item._nodeid`, which pytest 9.2 no
    longer reads (the id moved to `item._id`), so every group was split over both workers
    and each worker built the group's module fixtures again."""
    names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                    for mark in item.iter_markers("xdist_group")})
    if not names or item.nodeid.endswith("@" + "_".join(names)):
        return
    current = getattr(item, "_id", None)
    if current is not None:  # pytest 9.2+; before it, xdist's own suffix holds
        item._id = type(current).parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups marked xdist_group hold (see _group_suffix). Tests that need the example's cold
    build (about 20 s, once per run) go after the others, and the first worker starts that
    build now, so that it overlaps those others instead of holding a worker up; a run whose
    -k or -m leaves none of them does not start it. The order stays the same in every
    worker, as xdist needs."""
    if getattr(config.option, "loadgroup", False):  # xdist sets it in its workers
        for item in items:
            _group_suffix(item)
    late = [item for item in items if "cold_build" in item.fixturenames]
    if not late:
        return
    late.sort(key=lambda item: not item.name.startswith(LONGEST))  # stable: file order kept
    items[:] = [item for item in items if "cold_build" not in item.fixturenames] + late
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0" and not config.option.collectonly:
        _start_cold_build(config)


def pytest_sessionfinish() -> None:
    """Wait for a cold build still running in the background (a run stopped early)."""
    for thread in _BACKGROUND:
        thread.join()


@pytest.fixture(scope="session")
def cold_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The example's cold build (a fresh copy, no cache, no outputs, nothing seeded), done
    once per test run and shared by the xdist workers: (its directory, {"returncode",
    "stdout", "stderr"} of its `mlbuild run --json`). Do not modify the directory."""
    root = _cold_build_root(tmp_path_factory)
    with locked(root.with_suffix(".lock")):
        _cold_build(root)
    return root / "example", json.loads((root / "run.json").read_text())


@pytest.fixture(scope="session")
def built_example(cold_build: tuple[Path, dict[str, Any]]) -> Path:
    """The example after its cold build; copy it with example_built (do not modify)."""
    path, proc = cold_build
    assert proc["returncode"] == 0, f"{proc['stderr']}{proc['stdout']}"
    return path


@pytest.fixture(scope="session")
def stage_homes(built_example: Path) -> Path:
    """The stage HOMEs the example's cold build left (for seed_stage_homes)."""
    return built_example / STAGE_HOMES


@pytest.fixture
def example(tmp_path: Path) -> Project:
    """A fresh, unbuilt copy of the example."""
    return copy_example(tmp_path / "example")


@pytest.fixture
def example_built(built_example: Path, tmp_path: Path) -> Project:
    """A private copy of the built example (outputs, cache and lock present)."""
    dest = tmp_path / "example"
    copy_tree(built_example, dest)
    return Project(dest)


def recorded_outcomes(proc: dict[str, Any]) -> dict[str, str]:
    """stage -> outcome from a recorded `run --json` ({"returncode", "stdout", "stderr"})."""
    assert proc["returncode"] == 0, proc["stderr"] + proc["stdout"]
    return {s["stage"]: s["outcome"] for s in json.loads(proc["stdout"])["stages"]}


def _logreg_build(root: Path, built: Path) -> None:
    """Copy the built example to root/example and build it again with model=logreg,
    recording that `run --json` in root/run.json; the caller holds root's lock."""
    record = root / "run.json"
    if record.exists():
        return
    dest = root / "example"
    shutil.rmtree(dest, ignore_errors=True)  # left by an attempt that was interrupted
    copy_tree(built, dest)
    proc = Project(dest).run("run", "model=logreg", "--json")
    record.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                  "stderr": proc.stderr}))


@pytest.fixture(scope="session")
def logreg_built(built_example: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, dict[str, Any]]:
    """The built example built again with `mlbuild run model=logreg`: the logistic model in
    the workspace, both models in the cache and the run-cache. Done once per test run and
    shared by the xdist workers: (its directory, {"returncode", "stdout", "stderr"} of that
    `run --json`). Do not modify the directory; copy it with example_logreg."""
    root = shared_dir(tmp_path_factory) / "example-logreg"
    root.mkdir(exist_ok=True)
    with locked(root.with_suffix(".lock")):
        _logreg_build(root, built_example)
    return root / "example", json.loads((root / "run.json").read_text())


@pytest.fixture
def example_logreg(logreg_built: tuple[Path, dict[str, Any]], tmp_path: Path) -> Project:
    """A private copy of logreg_built's project (asserting that its build succeeded)."""
    assert recorded_outcomes(logreg_built[1])["train"] == "ran"
    dest = tmp_path / "example"
    copy_tree(logreg_built[0], dest)
    return Project(dest)


@pytest.fixture(scope="session")
def chain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """errcheck's hand-written CHAIN pipeline, built and committed once per worker (the bad
    input and failure tests copy it; a module may override it with a variant)."""
    from tests.errcheck import make_chain

    return make_chain(tmp_path_factory.mktemp("chain") / "proj").path


@pytest.fixture(scope="session")
def declared_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """errcheck's project with the declared stage 'x', built and committed once per worker."""
    from tests.errcheck import make_declared

    return make_declared(tmp_path_factory.mktemp("declared") / "proj").path


@pytest.fixture
def chain(chain_template: Path, tmp_path: Path) -> Project:
    """A private copy of the built hand-written pipeline (prepare -> train -> evaluate;
    report), from the requesting module's chain_template."""
    from tests.errcheck import copy_project

    return copy_project(chain_template, tmp_path / "proj")


@pytest.fixture
def declared(declared_template: Path, tmp_path: Path) -> Project:
    """A private copy of the built project with the declared stage 'x'."""
    from tests.errcheck import copy_project

    return copy_project(declared_template, tmp_path / "proj")


Factory = Callable[[Path], Project]
