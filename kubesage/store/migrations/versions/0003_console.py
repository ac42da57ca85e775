"""What the console asks of the store: the runs list's target filter and choices from an index
(a scan of the runs table otherwise, whose rows hold whole records), and lineage links from each
run to the component versions its steps ran, filled in for the runs recorded before.

Revision ID: 0003
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("runs_target_started", "runs", ["target", "started"], if_not_exists=True)
    bind = op.get_bind()
    runs = sa.table("runs", sa.column("run_id"), sa.column("record"))
    links = sa.table("run_links", sa.column("run_id"), sa.column("kind"), sa.column("value"),
                     sa.column("name"))
    bind.execute(links.delete().where(links.c.kind == "component"))  # all of them, anew
    for run_id, text in bind.execute(sa.select(runs.c.run_id, runs.c.record)).all():
        found: dict[str, str] = {}
        for step in json.loads(text).get("steps", []):
            if step.get("component") and step.get("version"):
                found.setdefault(f"{step['component']}@{step['version']}"[:512],
                                 str(step["name"])[:255])
        if found:
            bind.execute(links.insert(), [{"run_id": run_id, "kind": "component", "value": v,
                                           "name": n} for v, n in sorted(found.items())])

