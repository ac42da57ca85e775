"""The team store: who made each run and where (user, host), its target and end as indexed
columns; run tags and lineage links in tables of their own; the cache entry's run and user;
deploy records and the component catalog. Existing runs are filled in from their records.

Revision ID: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("target", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("user", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("host", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("ended", sa.Float, nullable=True))
        batch.create_index("runs_pipeline_started", ["pipeline", "started"])
        batch.create_index("runs_status", ["status"])
        batch.create_index("runs_user_started", ["user", "started"])
    with op.batch_alter_table("cache") as batch:
        batch.add_column(sa.Column("run_id", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("user", sa.String(255), nullable=False, server_default=""))
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("run_tags_key_value", "run_tags", ["key", "value"])
    op.create_table(
        "run_links",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(512), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, server_default=""),
    )
    op.create_index("run_links_kind_value", "run_links", ["kind", "value"])
    op.create_table(
        "deploys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("user", sa.String(255), nullable=False, server_default=""),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("deploys_endpoint", "deploys", ["endpoint", "created"])
    op.create_table(
        "components",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("publisher", sa.String(255), nullable=False, server_default=""),
        sa.Column("published", sa.Float, nullable=False),
    )
    _fill_in_existing_runs()


def _fill_in_existing_runs() -> None:
    """Indexed columns, tags and links of the runs recorded before this revision."""
    from kubesage.runs.record import RunRecord
    from kubesage.store.sql import links_of

    bind = op.get_bind()
    runs = sa.table("runs", sa.column("run_id"), sa.column("record"), sa.column("target"),
                    sa.column("user"), sa.column("host"), sa.column("ended"))
    tags = sa.table("run_tags", sa.column("run_id"), sa.column("key"), sa.column("value"))
    links = sa.table("run_links", sa.column("run_id"), sa.column("kind"), sa.column("value"),
                     sa.column("name"))
    for run_id, text in bind.execute(sa.select(runs.c.run_id, runs.c.record)).all():
        record = RunRecord.from_dict(json.loads(text))
        bind.execute(runs.update().where(runs.c.run_id == run_id).values(
            target=record.target, user=record.user, host=record.host, ended=record.ended))
        if record.tags:
            bind.execute(tags.insert(), [{"run_id": run_id, "key": k, "value": v}
                                         for k, v in record.tags.items()])
        found = links_of(record)
        if found:
            bind.execute(links.insert(), found)
