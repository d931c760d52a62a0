"""Import analysis: the project modules a stage's Python entry point imports, transitively."""

from __future__ import annotations

import shlex
from pathlib import Path

EXCLUDED_TOP = ("mlbuild",)  # the tool itself is environment, not the stage's code


def entry_point(root: Path, cmd: str, wdir: Path) -> Path | None:
    """The Python file a command runs: 'python x.py' or 'python -m pkg.mod'."""
    try:
        words = shlex.split(cmd.split("&&", maxsplit=1)[0].split(";", maxsplit=1)[0])
    except ValueError:
        return None
    for i, word in enumerate(words):
        name = Path(word).name
        if not name.startswith("python"):
            continue
        rest = [w for w in words[i + 1:] if w not in ("-u", "-B", "-O", "-OO", "-s", "-E")]
        if len(rest) >= 2 and rest[0] == "-m":
            return module_file(root, rest[1]) or module_file(wdir, rest[1])
        if rest and rest[0].endswith(".py"):
            path = (wdir / rest[0]).resolve()
            return path if path.is_file() else None
        return None
    return None


def module_file(base: Path, module: str) -> Path | None:
    """The file defining *module* under *base* (module.py, package __init__ or __main__)."""
    parts = module.split(".")
    if not parts or parts[0] in EXCLUDED_TOP:
        return None
    path = base.joinpath(*parts)
    for cand in (path.with_suffix(".py"), path / "__init__.py"):
        if cand.is_file():
            return cand.resolve()
    return None


def _package_inits(base: Path, module: str) -> list[Path]:
    parts = module.split(".")
    found = []
    for i in range(1, len(parts)):
        init = base.joinpath(*parts[:i], "__init__.py")
        if init.is_file():
            found.append(init.resolve())
    return found


def _imported_names(path: Path) -> list[tuple[str, int, list[str]]]:
    """(module, relative level, imported names) for every import in a file."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return []
    found: list[tuple[str, int, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [a.name for a in node.names]))
    return found


def _package_of(base: Path, path: Path) -> list[str]:
    try:
        rel = path.relative_to(base).with_suffix("")
    except ValueError:
        return []
    parts = list(rel.parts)
    return parts[:-1]


def closure(entry: Path, bases: list[Path]) -> list[Path]:
    """Project files the entry point imports, transitively (the entry included)."""
    seen: dict[Path, None] = {entry.resolve(): None}
    todo = [entry.resolve()]
    while todo:
        current = todo.pop()
        for module, level, names in _imported_names(current):
            for base in bases:
                if level:
                    pkg = _package_of(base, current)
                    if level - 1 > len(pkg):
                        continue
                    prefix = pkg[: len(pkg) - (level - 1)]
                    module_abs = ".".join([*prefix, *([module] if module else [])])
                else:
                    module_abs = module
                if not module_abs:
                    continue
                cands = [module_file(base, module_abs)]
                cands += [module_file(base, f"{module_abs}.{n}") for n in names if n != "*"]
                if module_abs.split(".")[0] not in EXCLUDED_TOP:
                    cands += _package_inits(base, module_abs)
                for cand in cands:
                    if cand is not None and cand not in seen:
                        seen[cand] = None
                        todo.append(cand)
    return list(seen)


def code_deps(root: Path, cmd: str, wdir: Path) -> list[Path]:
    """All project files a command's Python entry point depends on (empty if not Python)."""
    entry = entry_point(root, cmd, wdir)
    if entry is None:
        return []
    files = closure(entry, [root, entry.parent] if entry.parent != root else [root])
    try:
        words = shlex.split(cmd)
        module = words[words.index("-m") + 1]
    except (ValueError, IndexError):
        module = ""
    extra = _package_inits(root, module) if module else []
    return sorted({p for p in [*files, *extra] if p.is_relative_to(root)})


def third_party(files: list[Path], root: Path) -> set[str]:
    """Top-level names of absolute imports in *files* that are neither project modules nor
    the standard library (the packages the stage code imports from the environment, and
    mlbuild itself when the stage uses its API)."""
    import sys

    names: set[str] = set()
    for path in files:
        for module, level, _ in _imported_names(path):
            top = module.split(".")[0]
            if level or not top or top in sys.stdlib_module_names:
                continue
            if top in EXCLUDED_TOP:  # the tool, wherever it is imported from
                names.add(top)
                continue
            if module_file(root, top) is None and module_file(path.parent, top) is None:
                names.add(top)
    return names


def imported_modules(files: list[Path]) -> set[str]:
    """Absolute module names *files* import ('from x import y': x, and x.y in case y is a
    submodule): what a warm interpreter may import ahead for them."""
    names: set[str] = set()
    for path in files:
        for module, level, imported in _imported_names(path):
            if level or not module:
                continue
            names.add(module)
            names.update(f"{module}.{n}" for n in imported if n != "*")
    return names
