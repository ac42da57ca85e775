"""Where a team's runs live: the run store (SQLite embedded, or a shared PostgreSQL server;
``sql``, ``schema``, ``migrations``), store URLs and their errors (``url``), and the artifact
store (a local or shared folder, or S3) with its content-addressed local cache
(``artifacts``)."""

from kubesage.store.sql import RunStore
from kubesage.store.url import StoreError, StoreReadOnly, StoreUnreachable

__all__ = ["RunStore", "StoreError", "StoreReadOnly", "StoreUnreachable"]
