"""Life-cycle findings the whole team shares: the events that leave no registry tag (a gate
that refused a version, a drift finding, a failed continuous-training build, a verify result)
are appended as JSON lines to git notes under refs/notes/mlbuild, on the commit they concern.

`mlbuild model push` merges the remote's notes into ours and sends them with the registry's
tags; `mlbuild model fetch` brings the tags and merges the notes without sending anything, so
lineage, audit and the KPIs answer from what every clone can have, not from one machine's
run history. Each record's time is git's "now" (the committer time, which GIT_COMMITTER_DATE
sets), the same clock the registry's tags use.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.gitrepo import GitError, git, read_objects

REF = "refs/notes/mlbuild"
KINDS = ("gate", "drift", "ct", "verify")


@dataclass(frozen=True)
class Note:
    """One shared finding about a commit."""

    commit: str
    kind: str  # gate, drift, ct, verify
    time: int  # seconds since the epoch, by git's clock
    who: str
    doc: dict[str, Any]


FALLBACK = ("-c", "user.name=mlbuild", "-c", "user.email=mlbuild@localhost")


def git_now(root: Path, *config: str) -> tuple[int, str]:
    """git's committer identity and time, as a commit or a tag made now would carry them."""
    ident = git(root, *config, "var", "GIT_COMMITTER_IDENT").decode("utf-8", "replace").strip()
    who, _, stamp = ident.rpartition(">")
    seconds = stamp.split()[0] if stamp.split() else ""
    return (int(seconds) if seconds.isdigit() else int(time.time())), who + ">"


def _identity(root: Path) -> tuple[tuple[str, ...], int, str]:
    """Who writes the note: git's identity, or mlbuild's where git has none (CI machines)."""
    try:
        return (), *git_now(root)
    except GitError:
        return FALLBACK, *git_now(root, *FALLBACK)


def add(root: Path, commit: str, kind: str, doc: dict[str, Any]) -> bool:
    """Append a finding to *commit*'s note; False when git could not write it (a finding must
    never fail the command that found it)."""
    try:
        config, when, who = _identity(root)
    except GitError:
        return False
    line = json.dumps({"kind": kind, "time": when, "who": who, **doc}, sort_keys=True)
    for _attempt in range(5):  # two writers at once: git's ref lock refuses one; retry it
        try:
            git(root, *config, "notes", f"--ref={REF}", "append", "-m", line, commit)
        except GitError:
            time.sleep(0.05)
            continue
        return True
    return False


def fetch(root: Path, remote: str) -> bool:
    """Merge the remote's findings into ours (line by line: git's cat_sort_uniq strategy);
    False when the remote has none."""
    incoming = "refs/notes/mlbuild-incoming"
    try:
        git(root, "fetch", "-q", remote, f"+{REF}:{incoming}")
    except GitError:
        return False  # the remote has no findings yet
    try:
        git(root, "rev-parse", "--verify", "--quiet", REF)
    except GitError:  # none here yet: theirs as they are
        git(root, "update-ref", REF, incoming)
    else:
        git(root, *_identity(root)[0], "notes", f"--ref={REF}", "merge", "-q", "-s",
            "cat_sort_uniq", incoming)
    git(root, "update-ref", "-d", incoming)
    return True


def sync(root: Path, remote: str) -> bool:
    """Merge the remote's findings into ours, then send ours; False when there is nothing
    to send."""
    fetch(root, remote)
    try:
        git(root, "rev-parse", "--verify", "--quiet", REF)
    except GitError:
        return False
    git(root, "push", "-q", remote, f"{REF}:{REF}")
    return True


def _parse(commit: str, text: str) -> list[Note]:
    found = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:  # a note written by hand or another tool: not ours
            continue
        if isinstance(doc, dict) and doc.get("kind") in KINDS and isinstance(doc.get("time"),
                                                                              int):
            found.append(Note(commit, str(doc["kind"]), int(doc["time"]), str(doc.get("who")),
                              doc))
    return found


def read(root: Path) -> list[Note]:
    """Every shared finding of the repository, oldest first."""
    try:
        listing = git(root, "notes", f"--ref={REF}", "list").decode().split()
    except GitError:  # no notes yet
        return []
    pairs = list(zip(listing[::2], listing[1::2], strict=False))
    texts = read_objects(root, [blob for blob, _ in pairs]) if pairs else {}
    notes: list[Note] = []
    for blob, commit in pairs:
        notes.extend(_parse(commit, (texts.get(blob) or b"").decode("utf-8", "replace")))
    return sorted(notes, key=lambda n: n.time)
