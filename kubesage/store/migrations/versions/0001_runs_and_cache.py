"""The embedded store as every kubesage before the team store wrote it: runs and the step cache.

An existing ``.kubesage/runs.db`` is this revision (stamped when first opened), then upgraded in
place.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("runs_started", "runs", ["started"])
    op.create_table(
        "cache",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
