"""The registry's tags in GTO's format, read and written through git: the one module that
imports GTO (lazily: its grammar, not its git backend, so every git call stays in gitrepo)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.gitrepo import GitError, git

PAYLOAD = "mlbuild-registry: "  # the annotation line that carries mlbuild's JSON record
# Tags read in one git call: type, name, target commit, tagger time and identity, message.
_FORMAT = ("%(objecttype)%00%(refname:strip=2)%00%(*objectname)%00%(taggerdate:unix)%00"
           "%(taggername) %(taggeremail)%00%(contents)%01")


@dataclass(frozen=True)
class TagEvent:
    """One GTO tag: a registration, (un)assignment, deregistration or deprecation."""

    tag: str
    action: str  # register, assign, unassign, deregister, deprecate
    name: str
    version: str | None
    stage: str | None
    counter: int | None
    commit: str
    time: int  # the tagger's time, in seconds (GTO orders events by it)
    tagger: str
    message: str

    @property
    def record(self) -> dict[str, Any]:
        """mlbuild's JSON record in the annotation ({} for a tag made by another tool)."""
        for line in self.message.splitlines():
            if line.startswith(PAYLOAD):
                try:
                    doc = json.loads(line[len(PAYLOAD):])
                except ValueError:
                    return {}
                return doc if isinstance(doc, dict) else {}
        return {}

    @property
    def order(self) -> tuple[int, int]:
        """Time first, then GTO's counter (registrations, which have none, first)."""
        return self.time, self.counter if self.counter is not None else -1


@cache
def _gto() -> tuple[Any, Any]:
    from gto import constants, tag  # ~0.3 s of pydantic: only model commands pay it

    return constants, tag


def _parse(name: str) -> dict[str, Any]:
    return dict(_gto()[1].parse_name(name, raise_on_fail=False) or {})


def read_events(root: Path) -> list[TagEvent]:
    """Every annotated GTO tag of the repository, oldest first."""
    try:
        out = git(root, "for-each-ref", "refs/tags", f"--format={_FORMAT}").decode(
            "utf-8", "replace")
    except GitError as exc:
        raise UsageError(f"{root} is not in a git repository: the registry keeps versions "
                         "and stages as git tags ('git init' first)") from exc
    events = []
    for record in out.split("\x01"):
        fields = record.lstrip("\n").split("\x00")
        if len(fields) < 6 or fields[0] != "tag":  # lightweight tags: GTO ignores them too
            continue
        parsed = _parse(fields[1])
        if not parsed or not fields[2]:
            continue
        events.append(TagEvent(
            tag=fields[1], action=parsed["action"].value, name=parsed["name"],
            version=parsed.get("version"), stage=parsed.get("stage"),
            counter=parsed.get("counter"), commit=fields[2],
            time=int(fields[3] or 0), tagger=fields[4].strip(), message=fields[5]))
    return sorted(events, key=lambda e: e.order)


def valid_name(value: str) -> bool:
    """A name GTO accepts for an artifact or a stage."""
    return bool(_gto()[0].name_re.match(value))


def parse_version(value: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a GTO version 'vX.Y.Z' (pre-releases: None)."""
    match = re.fullmatch(f"v{_gto()[0].semver}", value)
    if not match or match["prerelease"] or match["buildmetadata"]:
        return None
    return int(match["major"]), int(match["minor"]), int(match["patch"])


def version_tag(name: str, version: str) -> str:
    """`name@vX.Y.Z`, as GTO names a registration."""
    constants, tag = _gto()
    return str(tag.name_tag(constants.Action.REGISTER, name, version=version, simple=True))


def stage_tag(name: str, stage: str, counter: int) -> str:
    """`name#stage#N`, as GTO names the Nth assignment of the artifact."""
    constants, tag = _gto()
    return f"{tag.name_tag(constants.Action.ASSIGN, name, stage=stage, simple=True)}#{counter}"


def create(root: Path, tag: str, commit: str, message: str, after: int) -> None:
    """Write an annotated tag. GTO orders an artifact's events by the tagger's time, which
    counts whole seconds: the tag is written in a later second than *after* (the artifact's
    newest event) so that gto, `dvc artifacts get` and mlbuild agree on the order."""
    while time.time() < after + 1:
        time.sleep(max(0.01, after + 1 - time.time()))
    git(root, "tag", "-a", tag, "-m", message, commit)


def push(root: Path, remote: str, tags: list[str]) -> None:
    """Send these tags to a git remote."""
    git(root, "push", "-q", remote, *[f"refs/tags/{t}:refs/tags/{t}" for t in tags])
