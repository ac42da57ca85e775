"""Step caching: a step whose inputs are all unchanged reuses its earlier outputs.

The key covers the component (name, version, entry point), the environment it runs in (image
ID, or the code hash for subprocess runs), its parameter values, the content (sha256) of every
input artifact, the fingerprint of every data mount it reads, and settings that change results
(the distribution layout). A component's declared resources, GPUs included, are part of its
interface, not of the host: a step has the same key on a GPU host and on a CPU host that runs
it without GPUs (``gpus: auto``), so either one's result is reused by the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from kubesage.dsl.interface import ComponentSpec

if TYPE_CHECKING:
    from kubesage.store import RunStore


def cache_key(
    spec: ComponentSpec,
    environment_id: str,
    parameters: dict[str, Any],
    input_shas: dict[str, str],
    data: dict[str, str],
    settings: dict[str, Any] | None = None,
) -> str:
    doc = {
        "settings": settings or {},
        "component": [spec.name, spec.version, spec.entry],
        "interface": spec.digest(),
        "environment": environment_id,
        "parameters": parameters,
        "inputs": input_shas,
        "data": data,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def lookup(store: RunStore, key: str) -> dict[str, Any] | None:
    """The cached outputs for ``key``, if every artifact they name is still on this machine's
    disk or in the shared artifact store (``uri``)."""
    entry = store.cache_get(key)
    if entry is None:
        return None
    if all(os.path.isdir(o["path"]) or o.get("uri") for o in entry["outputs"].values()):
        return entry
    return None
