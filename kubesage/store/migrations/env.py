"""Alembic's environment: migrations run on the connection the store hands in (never a URL
read from a file), inside the store's own transaction."""

from alembic import context

from kubesage.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
