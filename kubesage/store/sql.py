"""The run store: one SQL implementation for SQLite (the embedded default) and PostgreSQL (a
team's shared store), through SQLAlchemy Core.

Every statement uses bound parameters. A store opens its schema to the newest revision
(Alembic) the first time, a legacy ``runs.db`` included; a schema newer than this kubesage is
refused. A lost connection (a PostgreSQL restart) is retried with a message for up to
``RETRY_S`` seconds, so a run goes on and its record ends complete. A read-only role can list,
show and compare; anything that writes gets one clear error.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from kubesage.runs.record import RunRecord
from kubesage.store.schema import cache, components, deploys, run_links, run_tags, runs
from kubesage.store.url import StoreError, StoreReadOnly, StoreUnreachable, connect, redact

T = TypeVar("T")
RETRY_S = 120.0  # how long a lost connection is tried again before the operation fails
RUN_COLUMNS = ("pipeline", "status", "started", "target", "user", "host", "ended")


def links_of(record: RunRecord) -> list[dict[str, str]]:
    """What lineage follows from a run: its data fingerprints, images, code hashes, the
    component versions its steps ran and the models (Model outputs, by content) it made."""
    found: dict[tuple[str, str], str] = {}
    for mount, fingerprint in record.data.items():
        found[("data", fingerprint)] = mount
    for logical, image in record.images.items():
        found[("image", image)] = logical
    for logical, code in record.code.items():
        found[("code", code)] = logical
    for step in record.steps:
        if step.component and step.version:
            found.setdefault(("component", f"{step.component}@{step.version}"), step.name)
        for name, out in step.outputs.items():
            if out.get("type") == "Model" or name in ("model", "model.tar.gz"):
                if out.get("sha256"):
                    found[("model", str(out["sha256"]))] = f"{step.name}/{name}"
    return [{"run_id": record.run_id, "kind": kind, "value": value[:512], "name": name[:255]}
            for (kind, value), name in sorted(found.items())]


class RunStore:
    """Run records, their tags and lineage, the step cache index and deploy records, in the
    database at ``url`` (``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``); safe to
    share between threads, and between processes through the database."""

    def __init__(self, where: str, say: Callable[[str], None] | None = None) -> None:
        """``where``: a store URL, or a folder (its embedded store, ``runs.db``); ``say``
        tells the user when a lost connection is tried again."""
        url = where if "://" in where else "sqlite:///" + os.path.join(os.path.abspath(where),
                                                                      "runs.db")
        self.url = url
        self.location = redact(url)
        self.say = say
        self._lock = threading.Lock()
        self.engine: Engine = connect(url)

    # -- connections ------------------------------------------------------------------
    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _retry(self, what: str, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction, tried again while the server is unreachable."""
        deadline, attempt = time.monotonic() + RETRY_S, 0
        while True:
            try:
                with self._begin() as conn:
                    return work(conn)
            except OperationalError as e:
                if _read_only(e):
                    raise StoreReadOnly(self._read_only_message(what)) from None
                attempt += 1
                if time.monotonic() > deadline:
                    raise StoreUnreachable(
                        f"the run store at {self.location} did not answer for {RETRY_S:.0f} s "
                        f"({_first_line(e)}); start it, then 'kubesage rerun --from-failed'") from None
                if self.say is not None and attempt in (1, 5, 20):
                    self.say(f"store: {self.location} unreachable ({_first_line(e)}); "
                             f"retrying {what} (try {attempt})")
                time.sleep(min(0.2 * attempt, 2.0))
            except ProgrammingError as e:
                if _read_only(e):
                    raise StoreReadOnly(self._read_only_message(what)) from None
                raise
            except DBAPIError as e:
                if _read_only(e):
                    raise StoreReadOnly(self._read_only_message(what)) from None
                raise

    def _read_only_message(self, what: str) -> str:
        return (f"the run store at {self.location} is read-only for this user ({what} needs "
                "to write); list, show and compare work; use a role that may write to run")

    # -- runs ---------------------------------------------------------------------------
    def save(self, record: RunRecord) -> None:
        """Insert or update ``record`` with its tags and lineage links."""
        doc = json.dumps(record.to_dict(), sort_keys=True)
        row = {"run_id": record.run_id, "pipeline": record.pipeline, "status": record.status,
               "started": record.started, "record": doc, "target": record.target,
               "user": record.user, "host": record.host, "ended": record.ended}

        def work(conn: Connection) -> None:
            done = conn.execute(update(runs).where(runs.c.run_id == record.run_id)
                                .values({k: v for k, v in row.items() if k != "run_id"}))
            if done.rowcount == 0:
                conn.execute(insert(runs).values(row))
            conn.execute(delete(run_tags).where(run_tags.c.run_id == record.run_id))
            if record.tags:
                conn.execute(insert(run_tags), [{"run_id": record.run_id, "key": k, "value": v}
                                                for k, v in sorted(record.tags.items())])
            conn.execute(delete(run_links).where(run_links.c.run_id == record.run_id))
            found = links_of(record)
            if found:
                conn.execute(insert(run_links), found)

        with self._lock:
            self._retry(f"saving run {record.run_id}", work)

    def get(self, run_id: str) -> RunRecord:
        """Run ``run_id``, or the one run whose ID starts with it; ``KeyError`` otherwise."""
        def work(conn: Connection) -> list[str]:
            row = conn.execute(select(runs.c.record).where(runs.c.run_id == run_id)).first()
            if row is not None:
                return [row[0]]
            like = _escape_like(run_id) + "%"
            return [r[0] for r in conn.execute(
                select(runs.c.record).where(runs.c.run_id.like(like, escape="\\"))
                .order_by(runs.c.started.desc()).limit(2)).all()]

        found = self._retry(f"reading run {run_id}", work)
        if len(found) != 1:
            raise KeyError(run_id)
        return RunRecord.from_dict(json.loads(found[0]))

    def list(self, limit: int = 50, pipeline: str | None = None, *, offset: int = 0,
             status: str | None = None, target: str | None = None, user: str | None = None,
             tags: dict[str, str] | None = None, prefix: str | None = None) -> list[RunRecord]:
        """The newest runs first, filtered by pipeline, status, target, user, tags (all of
        them) and an ID prefix; ``offset`` pages through them."""
        where = _filters(pipeline, status, target, user, tags, prefix)
        query = (select(runs.c.record).where(*where).order_by(runs.c.started.desc())
                 .limit(limit).offset(offset))
        rows = self._retry("listing runs", lambda conn: conn.execute(query).all())
        return [RunRecord.from_dict(json.loads(r[0])) for r in rows]

    def count(self, pipeline: str | None = None, *, status: str | None = None,
              target: str | None = None, user: str | None = None,
              tags: dict[str, str] | None = None, prefix: str | None = None) -> int:
        """How many runs ``list`` would page through with these filters."""
        where = _filters(pipeline, status, target, user, tags, prefix)
        query = select(func.count()).select_from(runs).where(*where)
        return int(self._retry("counting runs", lambda conn: conn.execute(query).scalar_one()))

    def running(self) -> builtins.list[RunRecord]:
        """Every run whose record still says ``running``."""
        query = select(runs.c.record).where(runs.c.status == "running")
        rows = self._retry("listing running runs", lambda conn: conn.execute(query).all())
        return [RunRecord.from_dict(json.loads(r[0])) for r in rows]

    def facets(self) -> dict[str, builtins.list[str]]:
        """The values runs have for each filter: pipelines, statuses, targets, users."""
        def work(conn: Connection) -> dict[str, builtins.list[str]]:
            return {name: [r[0] for r in conn.execute(
                select(runs.c[name]).distinct().order_by(runs.c[name])).all()]
                for name in ("pipeline", "status", "target", "user")}

        return self._retry("reading filters", work)

    def linked(self, kind: str, value: str, limit: int | None = None) -> builtins.list[str]:
        """IDs of the runs linked to ``value`` (a data fingerprint, image, code hash, model
        sha256, ``component@version``), newest first (the newest ``limit``)."""
        query = (select(run_links.c.run_id).join(runs, runs.c.run_id == run_links.c.run_id)
                 .where(run_links.c.kind == kind, run_links.c.value == value)
                 .order_by(runs.c.started.desc()).limit(limit))
        return [r[0] for r in self._retry("following lineage",
                                          lambda conn: conn.execute(query).all())]

    # -- the step cache -------------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        query = select(cache.c.entry).where(cache.c.key == key)
        row = self._retry("reading the cache", lambda conn: conn.execute(query).first())
        return None if row is None else dict(json.loads(row[0]))

    def cache_put(self, key: str, entry: dict[str, Any], since: float = 0.0) -> bool:
        """Add the cache entry for ``key``; an entry there already is kept unless it was made
        before ``since`` (the moment the caller found it unusable: expired, its artifacts gone),
        which this one replaces. Two processes that computed the same step get one entry (the
        first), never a mixed one. Whether this one won."""
        now = time.time()
        row = {"key": key, "entry": json.dumps(entry, sort_keys=True), "created": now,
               "run_id": str(entry.get("run_id", "")), "user": str(entry.get("user", ""))}

        def work(conn: Connection) -> bool:
            found = conn.execute(select(cache.c.created).where(cache.c.key == key)).first()
            if found is None:
                conn.execute(insert(cache).values(row))
                return True
            if found[0] >= since:
                return False
            done = conn.execute(update(cache).where(cache.c.key == key,
                                                    cache.c.created == found[0])
                                .values({k: v for k, v in row.items() if k != "key"}))
            return bool(done.rowcount == 1)  # compare-and-swap: another writer may have won

        try:
            return self._retry("writing the cache", work)
        except IntegrityError:  # another process inserted it between our check and insert
            return False

    def cache_drop(self, key: str) -> None:
        """Forget a cache entry whose artifacts are gone everywhere."""
        self._retry("writing the cache",
                    lambda conn: conn.execute(delete(cache).where(cache.c.key == key)))

    # -- deploys ----------------------------------------------------------------------------
    def save_deploy(self, endpoint: str, target: str, user: str, doc: dict[str, Any]) -> None:
        """Record that ``endpoint`` on ``target`` serves what ``doc`` says (models, runs)."""
        row = {"endpoint": endpoint, "target": target, "created": time.time(), "user": user,
               "record": json.dumps(doc, sort_keys=True, default=str)}
        self._retry(f"recording the deploy of {endpoint}",
                    lambda conn: conn.execute(insert(deploys).values(row)))

    def deploys(self, endpoint: str | None = None) -> builtins.list[dict[str, Any]]:
        """Deploy records, newest first (of ``endpoint``, or all)."""
        query = select(deploys).order_by(deploys.c.created.desc())
        if endpoint:
            query = query.where(deploys.c.endpoint == endpoint)
        rows = self._retry("reading deploys", lambda conn: conn.execute(query).mappings().all())
        return [{**{k: r[k] for k in ("endpoint", "target", "created", "user")},
                 **json.loads(r["record"])} for r in rows]

    # -- the component catalog ------------------------------------------------------------
    def component(self, name: str, version: str) -> str | None:
        """The catalog entry (JSON) of ``name@version``, or None."""
        query = select(components.c.entry).where(components.c.name == name,
                                                 components.c.version == version)
        row = self._retry("reading the catalog", lambda conn: conn.execute(query).first())
        return None if row is None else str(row[0])

    def component_versions(self) -> builtins.list[tuple[str, str]]:
        """Every published (name, version)."""
        query = select(components.c.name, components.c.version).order_by(components.c.name)
        return [(r[0], r[1]) for r in self._retry("reading the catalog",
                                                  lambda conn: conn.execute(query).all())]

    def publish_component(self, name: str, version: str, entry: str, publisher: str) -> bool:
        """Add ``name@version`` (immutable: False, and nothing written, when it is there)."""
        row = {"name": name, "version": version, "entry": entry, "publisher": publisher,
               "published": time.time()}

        def work(conn: Connection) -> bool:
            if conn.execute(select(exists().where(components.c.name == name,
                                                  components.c.version == version))).scalar():
                return False
            conn.execute(insert(components).values(row))
            return True

        try:
            return self._retry(f"publishing {name}@{version}", work)
        except IntegrityError:
            return False

    def close(self) -> None:
        self.engine.dispose()


def _filters(pipeline: str | None, status: str | None, target: str | None, user: str | None,
             tags: dict[str, str] | None, prefix: str | None) -> builtins.list[Any]:
    where: builtins.list[Any] = []
    for column, value in (("pipeline", pipeline), ("status", status), ("target", target),
                          ("user", user)):
        if value:
            where.append(runs.c[column] == value)
    if prefix:
        where.append(runs.c.run_id.like(_escape_like(prefix) + "%", escape="\\"))
    for key, value in sorted((tags or {}).items()):
        where.append(exists().where(and_(run_tags.c.run_id == runs.c.run_id,
                                         run_tags.c.key == key, run_tags.c.value == value)))
    return where


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error)
    return (text.strip().splitlines() or ["no answer"])[0][:200]


def _read_only(error: Exception) -> bool:
    """PostgreSQL's "permission denied" and "read-only transaction", SQLite's read-only file."""
    text = str(getattr(error, "orig", None) or error).lower()
    return any(s in text for s in ("permission denied", "read-only transaction",
                                   "attempt to write a readonly database", "readonly database"))


__all__ = ["RunStore", "StoreError", "links_of"]
