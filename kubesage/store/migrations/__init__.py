"""Alembic migrations of the store's schema, one file per change in ``versions/``."""
