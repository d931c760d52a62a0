"""The run history: every command that builds, checks or moves data leaves one record.

A command appends its record as one JSON line to a journal (cheap enough for a no-op build:
no SQLite, no git subprocess on that path). Readers (`mlbuild log`, and later experiments,
the registry, lineage and the KPIs) query a SQLite index of the journal, brought up to date
when it is opened; the index has a schema version and migrations. Both live in mlbuild's
state directory (.dvc/tmp/mlbuild/history/), which git never sees.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbuild.events import QUIET, Event, Kind
from mlbuild.files.layout import state_dir
from mlbuild.gitrepo import dirty_later, head_revision

JOURNAL = "journal.jsonl"
INDEX = "history.sqlite"
SCHEMA_VERSION = 2
# MIGRATIONS[n] takes the index from schema version n to n + 1.
MIGRATIONS = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, command TEXT NOT NULL, args TEXT NOT NULL,
        revision TEXT, dirty INTEGER, user TEXT, host TEXT,
        started REAL NOT NULL, ended REAL NOT NULL, status TEXT NOT NULL,
        parent TEXT, detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX runs_started ON runs (started);
    CREATE TABLE stage_runs (
        run TEXT NOT NULL REFERENCES runs (id), stage TEXT NOT NULL, outcome TEXT NOT NULL,
        seconds REAL NOT NULL, reasons TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (run, stage)
    );
    CREATE TABLE outputs (
        run TEXT NOT NULL REFERENCES runs (id), stage TEXT NOT NULL, path TEXT NOT NULL,
        md5 TEXT NOT NULL, PRIMARY KEY (run, stage, path)
    );
    CREATE INDEX outputs_md5 ON outputs (md5);
    CREATE TABLE ingested (journal_offset INTEGER NOT NULL);
    INSERT INTO ingested VALUES (0);
    """,
    # 2: registry events (model register/promote/rollback), one row per record that has one,
    # and the lookup a promotion gate makes: a command's records for one revision.
    """
    CREATE TABLE registry_events (
        run TEXT PRIMARY KEY REFERENCES runs (id), model TEXT NOT NULL, action TEXT NOT NULL,
        version TEXT, stage TEXT, tag TEXT, passed INTEGER, forced INTEGER NOT NULL
    );
    CREATE INDEX registry_events_model ON registry_events (model);
    CREATE INDEX runs_command_revision ON runs (command, revision);
    INSERT INTO registry_events
        SELECT id, json_extract(detail, '$.registry.model'),
               json_extract(detail, '$.registry.action'),
               json_extract(detail, '$.registry.version'),
               json_extract(detail, '$.registry.stage'), json_extract(detail, '$.registry.tag'),
               json_extract(detail, '$.registry.gate.passed'),
               coalesce(json_extract(detail, '$.registry.forced'), 0)
        FROM runs WHERE json_extract(detail, '$.registry.model') IS NOT NULL;
    """,
)


@dataclass
class StageRecord:
    """What one stage did in a run."""

    stage: str
    outcome: str
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)  # path -> md5


@dataclass
class RunRecord:
    """One command's record: who ran what, on which revision, when, and how it ended."""

    id: str
    command: str
    args: list[str]
    revision: str | None
    dirty: bool | None  # None: not checked (a no-op build does not spend a git call on it)
    user: str
    host: str
    started: float
    ended: float = 0.0
    status: str = "running"  # ok, failed, interrupted, error
    parent: str | None = None  # a sweep or a pipeline that this run belongs to
    detail: dict[str, Any] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)


def history_dir(root: Path) -> Path:
    """Where the journal and its index live."""
    return state_dir(root) / "history"


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


class Recorder:
    """Listens to a command's events and keeps its record; `recording` writes it."""

    def __init__(self, root: Path, command: str, args: list[str]) -> None:
        started = time.time()
        self.root = root
        self.record = RunRecord(
            id=f"{int(started * 1000):012x}{os.urandom(5).hex()}", command=command,
            args=list(args), revision=head_revision(root), dirty=None, user=_user(),
            host=os.uname().nodename, started=started)
        self._stages: dict[str, StageRecord] = {}
        self._dirty: Callable[[], bool | None] | None = None

    def __call__(self, event: Event) -> None:
        if event.kind == Kind.START and self._dirty is None:
            # the sources as the first stage starts: what the build is made from; git works
            # while the stages run instead of after them
            self._dirty = dirty_later(self.root)
        elif event.kind == Kind.DONE:
            self._stages[event.stage] = StageRecord(
                event.stage, event.outcome, round(event.seconds, 3), list(event.reasons),
                event.message)

    def stage(self, record: StageRecord) -> None:
        """Record one stage's result directly (commands that do not emit build events)."""
        self._stages[record.stage] = record

    def outputs(self, stage: str, outs: dict[str, str]) -> None:
        """Record the output hashes a stage left behind."""
        if stage in self._stages:
            self._stages[stage].outputs = dict(outs)

    def finish(self, status: str) -> None:
        """Close the record and append it to the journal."""
        self.record.ended = time.time()
        self.record.status = status
        self.record.stages = list(self._stages.values())
        if self._dirty is not None:
            self.record.dirty = self._dirty()
        if self.record.dirty is None and any(s.outcome not in QUIET
                                             for s in self.record.stages):
            from mlbuild.gitrepo import is_dirty

            self.record.dirty = is_dirty(self.root)
        append(self.root, self.record)


@contextmanager
def recording(root: Path, command: str, args: list[str]) -> Iterator[Recorder]:
    """Record one command: its status is 'ok' unless the body says otherwise or raises."""
    recorder = Recorder(root, command, args)
    status = "error"
    try:
        yield recorder
        status = recorder.record.status if recorder.record.status != "running" else "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        with suppress(OSError):  # a full disk or a read-only state dir must not fail the command
            recorder.finish(status)


def _stage_document(stage: StageRecord) -> dict[str, Any]:
    """A stage's record without its empty fields: a no-op build of a thousand stages writes
    a thousand of them, mostly a name and 'up to date'."""
    doc: dict[str, Any] = {"stage": stage.stage, "outcome": stage.outcome}
    for key in ("seconds", "reasons", "message", "outputs"):
        value = getattr(stage, key)
        if value:
            doc[key] = value
    return doc


def _document(record: RunRecord) -> dict[str, Any]:
    """The journal line of a record (dataclasses.asdict copies too much for a no-op build)."""
    doc = {key: value for key, value in vars(record).items() if key != "stages"}
    doc["stages"] = [_stage_document(s) for s in record.stages]
    return doc


def append(root: Path, record: RunRecord) -> None:
    """Append one record to the journal as a single write (O_APPEND keeps lines whole)."""
    folder = history_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(_document(record), separators=(",", ":")) + "\n").encode()
    fd = os.open(folder / JOURNAL, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a writer killed mid-line
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)
