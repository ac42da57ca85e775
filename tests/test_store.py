"""The run store, one suite against the embedded SQLite store and a real PostgreSQL server;
and a team's shared home: two engineers, one PostgreSQL store, one S3 bucket (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from kubesage.runs.record import RunRecord, StepRecord
from kubesage.store import RunStore, StoreError, StoreReadOnly
from tests.conftest import REPO
from tests.servers import Postgres

pytestmark = pytest.mark.server

HOSTILE = ["'; DROP TABLE runs; --", 'x" OR "1"="1', "100%_done", "back\\slash", "ünï✓",
           "<script>alert(1)</script>", "a\0b".replace("\0", "")]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path, pg_password: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/runs.db"
    server: Postgres = request.getfixturevalue("postgres")
    return server.fresh_database(f"t{time.time_ns()}")


def record(run_id: str, **fields: Any) -> RunRecord:
    base: dict[str, Any] = {"pipeline": "p", "pipeline_file": "", "pipeline_hash": "h",
                            "runner": "docker", "started": time.time()}
    base.update(fields)
    return RunRecord(run_id, **base)


def test_records_round_trip_with_filters_paging_and_lineage(store_url: str) -> None:
    store = RunStore(store_url)
    for i in range(7):
        r = record(f"p-{i:02d}", started=1000.0 + i, user="ana" if i % 2 else "ben",
                   status="succeeded" if i < 5 else "failed", tags={"client": f"c{i % 3}"},
                   data={"fsx": "fp-1" if i < 4 else "fp-2"})
        r.steps = [StepRecord("train", "train", "train", "1", "img",
                              outputs={"model": {"path": "/m", "sha256": f"m{i}"}})]
        store.save(r)
    assert [r.run_id for r in store.list(limit=3)] == ["p-06", "p-05", "p-04"]
    assert [r.run_id for r in store.list(limit=3, offset=3)] == ["p-03", "p-02", "p-01"]
    assert store.count(user="ana") == 3 and store.count(status="failed") == 2
    assert [r.run_id for r in store.list(tags={"client": "c1"}, user="ana")] == ["p-01"]
    assert store.count(prefix="p-0") == 7 and store.get("p-05").user == "ana"
    assert store.linked("data", "fp-1") == ["p-03", "p-02", "p-01", "p-00"]
    assert store.linked("model", "m6") == ["p-06"]
    assert store.facets()["user"] == ["ana", "ben"]
    with pytest.raises(KeyError):
        store.get("p-")  # a prefix that names several runs names none


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_tags_and_values_are_data_never_sql(store_url: str, hostile: str) -> None:
    store = RunStore(store_url)
    r = record(f"run-{hostile}", pipeline=hostile, tags={hostile: hostile},
               parameters={"p": hostile}, user=hostile)
    store.save(r)
    store.save(record("other"))
    assert store.get(f"run-{hostile}").parameters == {"p": hostile}
    assert [x.run_id for x in store.list(tags={hostile: hostile})] == [f"run-{hostile}"]
    assert [x.run_id for x in store.list(pipeline=hostile, user=hostile)] == [f"run-{hostile}"]
    assert store.count(prefix=hostile) == 0 and store.count() == 2  # the tables are all there
    assert store.cache_put(hostile, {"run_id": hostile}) and store.cache_get(hostile) == {
        "run_id": hostile}


def test_one_cache_entry_wins_when_many_put_at_once(store_url: str) -> None:
    """Eight writers that computed the same step at the same moment: one entry, whole."""
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        mine = RunStore(store_url)
        barrier.wait()
        results.append(mine.cache_put("same-key", {"run_id": f"r{i}", "outputs": {"o": i}}))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    entry = RunStore(store_url).cache_get("same-key")
    assert entry is not None and entry["outputs"] == {"o": int(entry["run_id"][1:])}


WRITER = """
import sys, time
from kubesage.runs.record import RunRecord
from kubesage.store import RunStore
store = RunStore(sys.argv[1])
for i in range(25):
    r = RunRecord(f"{sys.argv[2]}-{i}", "p", "", "h", "docker", started=time.time(),
                  user=sys.argv[2], tags={"writer": sys.argv[2]})
    store.save(r)
    r.status = "succeeded"
    store.save(r)
"""


def test_eight_processes_from_two_checkouts_write_at_once(store_url: str, tmp_path) -> None:
    """Nothing lost, nothing left running: 8 processes, 2 working folders, 50 writes each."""
    procs = []
    for i in range(8):
        cwd = tmp_path / f"checkout-{i % 2}"
        cwd.mkdir(exist_ok=True)
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, store_url, f"w{i}"],
                                      cwd=cwd, env={**os.environ, "PYTHONPATH": REPO},
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    store = RunStore(store_url)
    assert store.count() == 200 and store.count(status="succeeded") == 200
    assert store.count(tags={"writer": "w3"}) == 25


def test_a_schema_newer_than_kubesage_is_refused(store_url: str) -> None:
    from sqlalchemy import text

    store = RunStore(store_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StoreError, match="schema revision 9999, newer than this kubesage knows"
                                         ".*upgrade kubesage"):
        RunStore(store_url)


def test_an_existing_embedded_store_is_migrated_in_place(tmp_path) -> None:
    """A runs.db as every kubesage before the team store wrote it opens, whole."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "runs.db")
    db.executescript("CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status "
                     "TEXT NOT NULL, started REAL NOT NULL, record TEXT NOT NULL); CREATE TABLE "
                     "cache (key TEXT PRIMARY KEY, entry TEXT NOT NULL, created REAL NOT NULL);")
    old = record("old-1", tags={"team": "vision"}, data={"fsx": "fp"}).to_dict()
    for key in ("user", "host", "checkout"):
        old.pop(key)
    db.execute("INSERT INTO runs VALUES (?,?,?,?,?)", ("old-1", "p", "succeeded", 1.0,
                                                      json.dumps(old)))
    db.execute("INSERT INTO cache VALUES (?,?,?)", ("k", json.dumps({"run_id": "old-1"}), 1.0))
    db.commit()
    db.close()
    store = RunStore(str(tmp_path))
    assert store.get("old-1").tags == {"team": "vision"} and store.cache_get("k")
    assert store.count(tags={"team": "vision"}) == 1 and store.linked("data", "fp") == ["old-1"]


def test_a_read_only_role_lists_and_shows_and_is_refused_a_write(
        postgres: Postgres, pg_password: str) -> None:
    url = postgres.fresh_database("readonly")
    RunStore(url).save(record("seen-1", tags={"k": "v"}))
    postgres.grant_read("readonly")
    reader = RunStore(url.replace("kubesage@", "reader@"))
    assert [r.run_id for r in reader.list(tags={"k": "v"})] == ["seen-1"]
    assert reader.get("seen").run_id == "seen-1"
    with pytest.raises(StoreReadOnly, match="is read-only for this user .*use a role that may "
                                            "write"):
        reader.save(record("new-1"))


def test_postgresql_restarted_during_writes_loses_nothing(postgres: Postgres,
                                                          pg_password: str) -> None:
    said: list[str] = []
    store = RunStore(postgres.fresh_database("restarts"), say=said.append)
    stop = threading.Event()

    def bounce() -> None:
        time.sleep(0.3)
        postgres.stop()
        time.sleep(2)
        postgres.start()
        stop.set()

    bouncer = threading.Thread(target=bounce)
    bouncer.start()
    i = 0
    while not stop.is_set() or i < 30:
        store.save(record(f"during-{i}"))
        i += 1
        time.sleep(0.05)
    bouncer.join()
    assert store.count() == i
    assert any("unreachable" in line and "retrying saving run" in line for line in said), said


def test_a_stale_cache_entry_is_replaced_and_a_fresh_one_kept(store_url: str) -> None:
    """A step that found the entry unusable when it started (expired, its artifacts gone)
    replaces it; a step that started before another finished keeps the other's entry."""
    store = RunStore(store_url)
    assert store.cache_put("k", {"run_id": "old"})
    started = time.time()
    assert store.cache_put("k", {"run_id": "new"}, since=started)
    assert store.cache_get("k") == {"run_id": "new"}
    assert not store.cache_put("k", {"run_id": "late"}, since=started)  # "new" is younger
    assert store.cache_get("k") == {"run_id": "new"}


def test_lineage_links_component_versions_and_pages_newest_first(store_url: str) -> None:
    """The runs that ran a component version (the catalog page's question), newest first, as
    many as asked."""
    store = RunStore(store_url)
    for i in range(5):
        r = record(f"c-{i}", started=2000.0 + i)
        r.steps = [StepRecord("train", "train", "train", "1.2.0" if i % 2 else "1.1.0", "img")]
        store.save(r)
    assert store.linked("component", "train@1.2.0") == ["c-3", "c-1"]
    assert store.linked("component", "train@1.1.0", limit=2) == ["c-4", "c-2"]
    assert store.linked("component", "train@9.9.9") == []
