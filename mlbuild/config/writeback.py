"""Writing a composition back into configs/: the edits to the Hydra config files that make
configs/ (without overrides) compose to given params, as `mlbuild exp apply` needs them.

Group choices (`model=logreg`) become the choice in the defaults list that picks the group;
a value (`model.learning_rate=0.2`) is set in the config file that gives the key its final
value (the last one in Hydra's merge order that has it, else the primary config). Files are
edited with ruamel.yaml's round trip (DVC's YAML library), so comments and layout stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.config.compose import CONFIG_DIR, CONFIG_NAME, compose
from mlbuild.errors import ConfigError

_MISSING = object()


@dataclass
class _Source:
    """One config file of the composition: its path under configs/ and its package."""

    path: str  # e.g. "model/lightgbm" (no suffix)
    package: str  # the dotted key it is merged at ("" for the root)
    parent: str | None


@dataclass
class _Editor:
    """The config files under *root*/configs, loaded once each and edited in memory."""

    root: Path
    docs: dict[str, Any] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)

    def doc(self, path: str) -> Any:
        if path not in self.docs:
            self.docs[path] = _yaml().load(self._file(path).read_text(encoding="utf-8"))
        return self.docs[path]

    def _file(self, path: str) -> Path:
        return self.root / CONFIG_DIR / f"{path}.yaml"

    def flush(self) -> list[str]:
        """Write the edited files and forget them; their paths relative to root."""
        written = []
        for path in sorted(self.touched):
            with self._file(path).open("w", encoding="utf-8") as handle:
                _yaml().dump(self.docs[path], handle)
            written.append(f"{CONFIG_DIR}/{path}.yaml")
        self.docs.clear()  # the next pass reads what was written
        self.touched.clear()
        return written


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, key order and quoting stay as written
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _sources(root: Path, overrides: list[str]) -> list[_Source]:
    """The project's config files in Hydra's merge order (Hydra's own defaults list)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    with initialize_config_dir(str((root / CONFIG_DIR).resolve()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        found = loader.compute_defaults_list(CONFIG_NAME, overrides, RunMode.RUN).defaults
    return [_Source(str(d.config_path), str(d.package or ""), d.parent) for d in found
            if d.config_path and (root / CONFIG_DIR / f"{d.config_path}.yaml").is_file()]


def _parsed(root: Path, overrides: list[str]) -> tuple[dict[str, str], list[tuple[str, Any]]]:
    """The group choices among *overrides* (`model=logreg`, where configs/model/ exists) and
    the other (key, value) settings, in order; a deletion (`~key`) has the value _MISSING."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices: dict[str, str] = {}
    values: list[tuple[str, Any]] = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if (root / CONFIG_DIR / key).is_dir():
            if not override.is_delete():
                choices[key] = override.get_value_element_as_str()
        else:
            values.append((key, _MISSING if override.is_delete() else override.value()))
    return choices, values


def _set_choice(editor: _Editor, sources: list[_Source], group: str, choice: str) -> None:
    """Point the defaults list entry that picks *group* at *choice*."""
    picked = next((s for s in sources if s.path.startswith(group + "/")), None)
    parent = picked.parent if picked is not None and picked.parent else CONFIG_NAME
    defaults = editor.doc(parent).get("defaults") or []
    for item in defaults:
        if hasattr(item, "keys"):
            for key in list(item.keys()):
                if str(key).removeprefix("override ").strip().lstrip("/") == group:
                    item[key] = choice
                    editor.touched.add(parent)
                    return
    raise ConfigError(f"{CONFIG_DIR}/{parent}.yaml: no defaults entry picks the config group "
                      f"'{group}', so the choice '{group}={choice}' has nowhere to go")


def _lookup(node: Any, parts: list[str]) -> Any:
    for part in parts:
        if not hasattr(node, "keys") or part not in node:
            return _MISSING
        node = node[part]
    return node


def _relative(source: _Source, key: str) -> list[str] | None:
    """*key* inside *source*'s file, or None when the file's package does not hold it."""
    if not source.package:
        return key.split(".")
    if key.startswith(source.package + "."):
        return key[len(source.package) + 1:].split(".")
    return None


def _owner(editor: _Editor, sources: list[_Source], key: str) -> tuple[str, list[str]]:
    """The file that gives *key* its value (the last that has it), else the primary config."""
    for source in reversed(sources):
        parts = _relative(source, key)
        if parts is not None and _lookup(editor.doc(source.path), parts) is not _MISSING:
            return source.path, parts
    return CONFIG_NAME, key.split(".")


def _set_value(editor: _Editor, sources: list[_Source], key: str, value: Any) -> None:
    from ruamel.yaml.comments import CommentedMap

    path, parts = _owner(editor, sources, key)
    node = editor.doc(path)
    for part in parts[:-1]:
        if not hasattr(node.get(part), "keys"):
            node[part] = CommentedMap()
        node = node[part]
    if node.get(parts[-1], _MISSING) != value:
        node[parts[-1]] = value
        editor.touched.add(path)


def _delete(editor: _Editor, sources: list[_Source], key: str) -> None:
    for source in sources:
        parts = _relative(source, key)
        if parts is None:
            continue
        parent = _lookup(editor.doc(source.path), parts[:-1])
        if hasattr(parent, "keys") and parts[-1] in parent:
            del parent[parts[-1]]
            editor.touched.add(source.path)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict) or not data:
        return {prefix[:-1]: data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def _settle(editor: _Editor, root: Path, want: dict[str, Any]) -> None:
    """Set (or delete) every key whose composed value still differs from *want*'s."""
    sources = _sources(root, [])
    have = _flat(compose(root, []))
    for key in sorted(set(want) | set(have)):
        if key not in want:
            _delete(editor, sources, key)
        elif have.get(key, _MISSING) != want[key] or type(have.get(key)) is not type(want[key]):
            _set_value(editor, sources, key, want[key])


def write_back(root: Path, overrides: list[str], target: dict[str, Any]) -> list[str]:
    """Edit the config files under *root*/configs so that they compose, with no overrides, to
    *target*. The experiment's *overrides*, when known, go in first (a group choice into the
    defaults list, a value into the file that owns its key, so an interpolation of it stays);
    whatever still differs is then set where it is defined. Returns the files written
    (relative to *root*); ConfigError names a key that cannot be expressed."""
    editor = _Editor(root)
    choices, values = _parsed(root, overrides)
    sources = _sources(root, [])
    for group, choice in choices.items():
        _set_choice(editor, sources, group, choice)
    written = set(editor.flush())
    sources = _sources(root, [])
    for key, value in values:
        if value is _MISSING:
            _delete(editor, sources, key)
        else:
            _set_value(editor, sources, key, value)
    written |= set(editor.flush())
    _settle(editor, root, _flat(target))
    written |= set(editor.flush())
    result = compose(root, [])
    if result != target:
        got, want = _flat(result), _flat(target)
        differ = sorted(k for k in set(got) | set(want)
                        if got.get(k, _MISSING) != want.get(k, _MISSING))
        raise ConfigError(f"{CONFIG_DIR}/: cannot write these params into the config files "
                          f"(key '{(differ or ['?'])[0]}' still differs after editing them)")
    return sorted(written)
