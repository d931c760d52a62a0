"""The YAML dialect DVC speaks (1.2 core schema), on libyaml's fast C parser and emitter.

Imported only when a YAML file really has to be parsed or written: a no-op build answers from
JSON memos and never loads PyYAML.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

try:
    from yaml import CSafeDumper as _FastDumper
    from yaml import CSafeLoader as _FastLoader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeDumper as _FastDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _FastLoader  # type: ignore[assignment]

# DVC reads and writes YAML with ruamel.yaml, i.e. the YAML 1.2 core schema: only true/false
# are booleans ('yes', 'on' are strings), '1e-3' is a float and '010' is decimal. PyYAML
# speaks YAML 1.1, so params, dvc.yaml and dvc.lock would disagree with DVC on such scalars.
_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_12 = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT_12 = re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_DIGITS = list("-+0123456789")


class _Loader(_FastLoader):
    """libyaml's parser with the YAML 1.2 core schema's implicit types, as DVC reads YAML."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a repeated key, as DVC does, rather than silently keep the last one."""
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


class _Dumper(_FastDumper):
    """Quotes every string that YAML 1.1 or 1.2 would read as another type."""


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    base = {"0b": 2, "0o": 8, "0x": 16}.get(digits[:2], 10)
    return sign * int(digits[2:] if base != 10 else digits, base)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in rules if tag not in (_BOOL, _INT, _FLOAT)]
    for first, rules in _FastLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, _BOOL_12, list("tTfF"))
_Loader.add_implicit_resolver(_FLOAT, _FLOAT_12, [*_DIGITS, "."])
_Loader.add_implicit_resolver(_INT, _INT_12, _DIGITS)
_Loader.add_constructor(_INT, _construct_int)
_Dumper.add_implicit_resolver(_FLOAT, _FLOAT_12, [*_DIGITS, "."])
_Dumper.add_implicit_resolver(_INT, _INT_12, _DIGITS)



Loader = _Loader


def load(text: str) -> Any:
    """Parse YAML 1.2 text (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_Loader)


def dump(data: Any) -> str:
    """Serialise to block-style YAML keeping key order."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
        width=80,
    )
