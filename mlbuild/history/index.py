"""The SQLite index of the run journal: schema versions, migrations, ingestion and queries."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from mlbuild.errors import ConfigError
from mlbuild.history.journal import (
    INDEX,
    JOURNAL,
    MIGRATIONS,
    SCHEMA_VERSION,
    RunRecord,
    StageRecord,
    history_dir,
)


class HistoryIndex:
    """Queries over every recorded run; opening it ingests what the journal gained."""

    def __init__(self, root: Path) -> None:
        folder = history_dir(root)
        folder.mkdir(parents=True, exist_ok=True)
        self.journal = folder / JOURNAL
        self.db = sqlite3.connect(folder / INDEX, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self._migrate(folder / INDEX)
        self._ingest()

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def _migrate(self, path: Path) -> None:
        """Bring the schema to this version, one migration at a time, each in a transaction
        that re-reads the version (another process may have migrated meanwhile)."""
        while True:
            self.db.execute("BEGIN IMMEDIATE")
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            if version >= SCHEMA_VERSION:
                self.db.execute("COMMIT")
                break
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {version + 1}")
            self.db.execute("COMMIT")
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{path}: the run history was written by a newer mlbuild "
                              f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade")

    def _ingest(self) -> None:
        """Index the journal lines written since the last ingestion (a torn last line, from
        a writer killed mid-write, is left for later)."""
        if not self.journal.is_file():
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            offset = int(self.db.execute("SELECT journal_offset FROM ingested").fetchone()[0])
            with open(self.journal, "rb") as fobj:
                fobj.seek(offset)
                for line in fobj:
                    if not line.endswith(b"\n"):
                        break
                    offset += len(line)
                    self._insert(line)
            self.db.execute("UPDATE ingested SET journal_offset = ?", (offset,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _insert(self, line: bytes) -> None:
        try:
            doc = json.loads(line)
            run = (doc["id"], doc["command"], json.dumps(doc["args"]), doc.get("revision"),
                   doc.get("dirty"), doc.get("user"), doc.get("host"), doc["started"],
                   doc["ended"], doc["status"], doc.get("parent"),
                   json.dumps(doc.get("detail") or {}))
        except (ValueError, KeyError, TypeError):
            return  # not a record (a damaged line): skipped, the journal keeps it
        self.db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", run)
        self._insert_registry(doc["id"], doc.get("detail") or {})
        for stage in doc.get("stages") or []:
            self.db.execute("INSERT OR REPLACE INTO stage_runs VALUES (?,?,?,?,?,?)",
                            (doc["id"], stage["stage"], stage["outcome"],
                             stage.get("seconds", 0.0), json.dumps(stage.get("reasons", [])),
                             stage.get("message", "")))
            for path, md5 in (stage.get("outputs") or {}).items():
                self.db.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?)",
                                (doc["id"], stage["stage"], path, md5))

    def _insert_registry(self, run: str, detail: dict[str, Any]) -> None:
        event = detail.get("registry") if isinstance(detail, dict) else None
        if not isinstance(event, dict) or not event.get("model"):
            return
        gate = event.get("gate")
        gate = gate if isinstance(gate, dict) else {}
        self.db.execute("INSERT OR REPLACE INTO registry_events VALUES (?,?,?,?,?,?,?,?)",
                        (run, event["model"], event.get("action", ""), event.get("version"),
                         event.get("stage"), event.get("tag"), gate.get("passed"),
                         bool(event.get("forced"))))

    def latest(self, command: str, revision: str, status: str = "ok") -> RunRecord | None:
        """The newest record of *command* on *revision* that ended with *status*."""
        row = self.db.execute(
            "SELECT * FROM runs WHERE command = ? AND revision = ? AND status = ? "
            "ORDER BY started DESC LIMIT 1", (command, revision, status)).fetchone()
        return None if row is None else self._record(row)

    def built_by(self, md5: str) -> str | None:
        """The id of the newest successful run that left an output with this md5."""
        row = self.db.execute(
            "SELECT r.id FROM outputs o JOIN runs r ON r.id = o.run WHERE o.md5 = ? AND "
            "r.status = 'ok' ORDER BY r.started DESC LIMIT 1", (md5,)).fetchone()
        return None if row is None else str(row[0])

    def registry_events(self, model: str) -> list[tuple[str, str, str | None, str | None,
                                                         bool | None, bool]]:
        """(run id, action, version, stage, gate passed, forced) of a model, oldest first."""
        rows = self.db.execute(
            "SELECT e.run, e.action, e.version, e.stage, e.passed, e.forced FROM "
            "registry_events e JOIN runs r ON r.id = e.run WHERE e.model = ? "
            "ORDER BY r.started", (model,)).fetchall()
        return [(r[0], r[1], r[2], r[3], None if r[4] is None else bool(r[4]), bool(r[5]))
                for r in rows]

    def recent(self, limit: int, command: str | None = None) -> list[RunRecord]:
        """The latest runs, newest first."""
        where, params = ("WHERE command = ?", [command]) if command else ("", [])
        rows = self.db.execute(f"SELECT * FROM runs {where} ORDER BY started DESC LIMIT ?",
                               [*params, limit]).fetchall()
        return [self._record(row) for row in rows]

    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        run = RunRecord(id=row[0], command=row[1], args=json.loads(row[2]), revision=row[3],
                        dirty=None if row[4] is None else bool(row[4]), user=row[5],
                        host=row[6], started=row[7], ended=row[8], status=row[9],
                        parent=row[10], detail=json.loads(row[11]))
        outs: dict[str, dict[str, str]] = {}
        for stage, path, md5 in self.db.execute(
                "SELECT stage, path, md5 FROM outputs WHERE run = ?", (run.id,)):
            outs.setdefault(stage, {})[path] = md5
        for stage, outcome, seconds, reasons, message in self.db.execute(
                "SELECT stage, outcome, seconds, reasons, message FROM stage_runs WHERE run = ?"
                " ORDER BY rowid", (run.id,)):
            run.stages.append(StageRecord(stage, outcome, seconds, json.loads(reasons),
                                          message, outs.get(stage, {})))
        return run
