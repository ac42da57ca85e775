"""The store's tables, declared once with SQLAlchemy Core for SQLite and PostgreSQL alike.

A run is kept whole as its JSON record (``runs.record``), beside indexed columns for what is
queried (pipeline, status, target, user, start time) and a table of its tags; ``run_links`` holds
what lineage follows (data fingerprints, image IDs, code hashes, the models a run made and the
endpoints they serve), so "every model trained on this data" is one indexed query. The step
cache, deploy records and the component catalog live beside them. Migrations (Alembic) are in
``migrations/versions``, one file per change; ``SCHEMA_HEAD`` is the newest this code knows.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

SCHEMA_HEAD = "0003"

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("run_id", String(255), primary_key=True),
    Column("pipeline", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("started", Float, nullable=False),
    Column("record", Text, nullable=False),
    Column("target", String(64), nullable=False, server_default=""),
    Column("user", String(255), nullable=False, server_default=""),
    Column("host", String(255), nullable=False, server_default=""),
    Column("ended", Float, nullable=True),
    Index("runs_started", "started"),
    Index("runs_pipeline_started", "pipeline", "started"),
    Index("runs_status", "status"),
    Index("runs_user_started", "user", "started"),
    Index("runs_target_started", "target", "started"),
)

run_tags = Table(
    "run_tags", metadata,
    Column("run_id", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Index("run_tags_key_value", "key", "value"),
)

run_links = Table(
    "run_links", metadata,
    Column("run_id", String(255), primary_key=True),
    Column("kind", String(32), primary_key=True),  # data, image, code, model, component, deploy
    Column("value", String(512), primary_key=True),
    Column("name", String(255), nullable=False, server_default=""),  # mount, step/output, ...
    Index("run_links_kind_value", "kind", "value"),
)

cache = Table(
    "cache", metadata,
    Column("key", String(128), primary_key=True),
    Column("entry", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("run_id", String(255), nullable=False, server_default=""),
    Column("user", String(255), nullable=False, server_default=""),
)

deploys = Table(
    "deploys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("target", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("user", String(255), nullable=False, server_default=""),
    Column("record", Text, nullable=False),
    Index("deploys_endpoint", "endpoint", "created"),
)

components = Table(
    "components", metadata,
    Column("name", String(255), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("entry", Text, nullable=False),
    Column("publisher", String(255), nullable=False, server_default=""),
    Column("published", Float, nullable=False),
)
