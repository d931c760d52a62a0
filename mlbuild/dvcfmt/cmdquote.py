"""`${...}` in a declared stage's cmd, filled in at compile time with each value quoted for
the shell, so a param value (a Hydra override) is data and never a command."""

from __future__ import annotations

import re
import shlex
from typing import Any

from mlbuild.errors import ConfigError

# DVC's interpolation syntax (dvc/parsing/interpolate.py KEYCRE); '\${' is a literal '${'
KEYCRE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")
SHELL_META = re.compile(r"[\s$`\\\"';&|<>(){}*?\[\]!#~]")


def is_templated(cmd: str) -> bool:
    """True when *cmd* interpolates a value."""
    return KEYCRE.search(cmd) is not None


def _render(value: Any) -> str:
    """A value as DVC renders it in a cmd, quoted for the shell where DVC does not."""
    from dvc.parsing.interpolate import to_str

    if isinstance(value, dict | bool | int | float):
        return str(to_str(value))  # numbers and flags are safe; DVC quotes a dict's strings
    return shlex.quote(str(to_str(value)))


def quote_cmd(cmd: str, params: dict[str, Any], where: str) -> str:
    """*cmd* with every `${key}` replaced by its shell-quoted value from *params*."""
    from dvc.exceptions import DvcException
    from dvc.parsing.context import Context

    context = Context(params)
    out, index = "", 0
    for match in KEYCRE.finditer(cmd):
        expr = match.group("inner").strip()
        try:
            value = context.select(expr, unwrap=True)
        except (DvcException, KeyError, ValueError) as exc:
            raise ConfigError(f"{where}: cmd: cannot interpolate '${{{expr}}}': "
                              f"{' '.join(str(exc).split())}") from exc
        out += cmd[index:match.start()] + _render(value)
        index = match.end()
    return (out + cmd[index:]).replace(r"\${", "${")


def shell_warnings(cmd: str, select: Any) -> list[str]:
    """Interpolations in a hand-written cmd whose value the shell would interpret: DVC runs
    them as they are, so mlbuild does too, and says so. *select* maps a key to its value
    (raising when the key is not a global one, such as a foreach item)."""
    found = []
    for match in KEYCRE.finditer(cmd):
        expr = match.group("inner").strip()
        try:
            value = select(expr)
        except Exception:  # a foreach or stage-level variable: not knowable here
            continue
        if isinstance(value, str) and SHELL_META.search(value):
            found.append(f"cmd interpolates '${{{expr}}}' = {value!r}, which holds shell "
                         "metacharacters; the shell interprets them, as under dvc repro")
    return found
