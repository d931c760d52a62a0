"""The architecture holds: every import inside mlbuild runs downward through the layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlbuild"
# Lowest first. A module may import its own folder and any layer below its own; layers that
# share a rank are siblings and must not import each other.
LAYERS = {
    "errors": 0,
    "events": 1, "files": 1,
    "contracts": 2, "gitrepo": 2,
    "pipeline": 3,
    "dvcfmt": 4,
    "config": 5, "store": 5, "history": 5,
    "sandbox": 6,
    "engine": 7,
    "verify": 8, "data": 8,
    "api": 9,
    "experiments": 10, "registry": 10,  # the life-cycle layers: built on api and the engine
    "export": 10,  # compiles the pipeline for other engines (Kubeflow Pipelines, a container)
    "serve": 11,  # serves what the registry holds
    "monitor": 12,  # watches what is served
    "ct": 13,  # retrains on data, code, schedule or drift
    "lineage": 14,  # answers questions about all of the above: lineage, impact, audit, KPIs
    "ui": 15,  # the read-only dashboard over every layer
    "cli": 16,
    "launch": 17,  # the console script and the resident server that forks commands
}
ENTRY = {"__init__", "__main__"}  # the package root: stage helpers and `python -m mlbuild`


def _layer(module: str) -> str:
    """'mlbuild.store.cache' -> 'store'; 'mlbuild.errors' -> 'errors'."""
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    """Every mlbuild module *path* imports, at the top or lazily inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "mlbuild":
                found |= {f"mlbuild.{a.name}" for a in node.names if a.name != "__version__"}
            elif node.module.startswith("mlbuild."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlbuild.")}
    return found


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if "hook" in rel.parts:  # sitecustomize runs inside stage processes, stdlib only
            continue
        mods[".".join(rel.parts)] = path
    return mods


def test_every_module_belongs_to_a_layer() -> None:
    unknown = {m for m in _modules() if m != "mlbuild" and _layer(m) not in {*LAYERS, *ENTRY}}
    assert not unknown, f"add these to a layer in LAYERS: {sorted(unknown)}"


def test_imports_only_run_downward() -> None:
    wrong = []
    for module, path in _modules().items():
        if module == "mlbuild" or _layer(module) in ENTRY:
            continue
        mine = _layer(module)
        for target in _imports(path):
            theirs = _layer(target)
            if theirs == mine or theirs in ENTRY:
                continue
            if LAYERS.get(theirs, 99) >= LAYERS[mine]:
                wrong.append(f"{module} imports {target} ({mine} -> {theirs})")
    assert not wrong, "imports that run upward or sideways:\n" + "\n".join(sorted(wrong))


def test_every_layer_says_what_it_owns_and_may_import() -> None:
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{folder.name}/__init__.py: say what it may import"
