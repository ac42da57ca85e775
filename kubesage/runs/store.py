"""The embedded run store (SQLite): run records and the step cache index."""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from typing import Any

from kubesage.runs.record import RunRecord
from kubesage.runs.step_user import share_existing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    entry TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class RunStore:
    """Run records and cache entries in ``<root>/runs.db``; safe to share between threads."""

    def __init__(self, root: str) -> None:
        os.makedirs(root, exist_ok=True)
        share_existing(root)
        self.root = root
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.path.join(root, "runs.db"), check_same_thread=False,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def save(self, record: RunRecord) -> None:
        doc = json.dumps(record.to_dict(), sort_keys=True)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO runs (run_id, pipeline, status, started, record) VALUES (?,?,?,?,?) "
                "ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, record=excluded.record",
                (record.run_id, record.pipeline, record.status, record.started, doc),
            )

    def get(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                rows = self._db.execute(
                    "SELECT record FROM runs WHERE run_id LIKE ? ORDER BY started DESC",
                    (run_id + "%",)).fetchall()
                if len(rows) != 1:
                    raise KeyError(run_id)
                row = rows[0]
        return RunRecord.from_dict(json.loads(row[0]))

    def list(self, limit: int = 50, pipeline: str | None = None) -> list[RunRecord]:
        query = "SELECT record FROM runs"
        args: tuple[Any, ...] = ()
        if pipeline:
            query += " WHERE pipeline = ?"
            args = (pipeline,)
        query += " ORDER BY started DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, args + (limit,)).fetchall()
        return [RunRecord.from_dict(json.loads(r[0])) for r in rows]

    def running(self) -> builtins.list[RunRecord]:
        """Every run whose record still says ``running``."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM runs WHERE status = 'running'").fetchall()
        return [RunRecord.from_dict(json.loads(r[0])) for r in rows]

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT entry FROM cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def cache_put(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO cache (key, entry, created) VALUES (?,?,?)",
                (key, json.dumps(entry, sort_keys=True), time.time()),
            )

    def close(self) -> None:
        self._db.close()
