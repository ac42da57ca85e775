"""The catalog page: published components with their versions, interfaces, pinned images and
publishers, and which runs ran which version (the store's lineage links, ``component@version``).
"""

from __future__ import annotations

from typing import Any

from kubesage.catalog import Catalog, CatalogError
from kubesage.runs.workspace import Workspace

RUNS_PER_VERSION = 20


def catalog_page(workspace: Workspace, chosen: str | None) -> dict[str, Any]:
    """Every component's newest version; for ``chosen`` (or each when few), its versions with
    the runs that used them."""
    store = workspace.store
    try:
        catalog = Catalog(None, default=workspace.local.store_url)
        newest = catalog.list()
    except CatalogError as e:
        return {"error": str(e), "components": [], "location": "", "chosen": chosen}
    components = []
    for entry in newest:
        versions = []
        if chosen in (None, "", entry.name):
            for version in reversed(catalog.versions(entry.name)):
                published = catalog.get(entry.name, version)
                versions.append({"entry": published, "runs": store.linked(
                    "component", f"{entry.name}@{version}", limit=RUNS_PER_VERSION)})
        components.append({"entry": entry, "versions": versions,
                           "inputs": entry.interface.get("inputs", []),
                           "outputs": entry.interface.get("outputs", []),
                           "parameters": entry.interface.get("parameters", [])})
    return {"error": "", "components": components, "chosen": chosen,
            "location": store.location if catalog.location == workspace.local.store_url
            else catalog.location}
