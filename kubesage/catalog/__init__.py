"""The shared component catalog: published component versions (immutable) and ``use()``."""

from kubesage.catalog.catalog import Catalog, CatalogError, Entry, breaking_changes, publishable, use

__all__ = ["Catalog", "CatalogError", "Entry", "breaking_changes", "publishable", "use"]
