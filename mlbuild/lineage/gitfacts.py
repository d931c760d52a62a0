"""The git facts the questions need, each read in one git call: commits with their authors,
dates, changed files and trailers; a file's last change; revisions checked for existence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlbuild.errors import UsageError
from mlbuild.gitrepo import GitError, git, read_objects

TRIGGERS = "Mlbuild-Triggers"  # the trailer `mlbuild ct` writes on its commits
_FORMAT = f"%x01%H%x00%an <%ae>%x00%at%x00%s%x00%(trailers:key={TRIGGERS},valueonly,separator=%x2C)"


@dataclass(frozen=True)
class Commit:
    """One commit: who wrote it, when (author time), its subject, files and ct triggers."""

    sha: str
    author: str
    time: int
    subject: str
    files: tuple[str, ...]
    triggers: tuple[str, ...]  # from the Mlbuild-Triggers trailer (ct's retrains)


def resolve(root: Path, rev: str) -> str:
    """A revision's commit; an unknown one is the user's mistake."""
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except GitError:
        raise UsageError(f"unknown revision '{rev}': git knows no such commit, branch or "
                         "tag") from None


def shallow(root: Path) -> bool:
    """The clone lacks history (git clone --depth)."""
    try:
        return git(root, "rev-parse", "--is-shallow-repository").strip() == b"true"
    except GitError:
        return False


def commits(root: Path, *revs: str) -> list[Commit]:
    """Commits reachable from *revs* (default: every branch and tag; not the notes or the
    experiments refs), newest first."""
    try:
        out = git(root, "log", f"--format={_FORMAT}", "--name-only", "--no-renames",
                  *(revs or ("--branches", "--tags"))).decode("utf-8", "replace")
    except GitError:
        return []  # a repository without commits yet
    found = []
    for record in out.split("\x01")[1:]:
        head, _, names = record.partition("\n")
        fields = head.split("\x00")
        if len(fields) < 5:
            continue
        found.append(Commit(fields[0], fields[1], int(fields[2]), fields[3],
                            tuple(n for n in names.splitlines() if n),
                            tuple(t.strip() for t in fields[4].split(",") if t.strip())))
    return found


def last_change(root: Path, rev: str, path: str) -> Commit | None:
    """The commit that last changed *path* at or before *rev*."""
    found = commits(root, "-1", rev, "--", path)
    return found[0] if found else None


def tracked(root: Path, rev: str) -> set[str]:
    """Every file git tracks at *rev*."""
    return set(git(root, "ls-tree", "-r", "--name-only", "-z", rev).decode(
        "utf-8", "replace").split("\0")) - {""}


def read_blobs(root: Path, names: list[str]) -> dict[str, str]:
    """The text of each git object named (a blob id or REV:PATH), in one git call; a missing
    one is left out."""
    return {name: blob.decode("utf-8", "replace")
            for name, blob in read_objects(root, names).items() if blob is not None}
