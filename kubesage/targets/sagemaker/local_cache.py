"""The step cache of local SageMaker runs, keyed as the service keys it.

SageMaker reuses a step with ``CacheConfig`` when its request is unchanged, where it writes
(outputs, checkpoints) aside. Locally the key also covers the image's ID and the content of the
inputs (the service trusts that an S3 URI names fixed content; a local folder may change).
Entries live in the local run store's cache index; a hit whose outputs were removed or
overwritten since is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from kubesage.runs.artifacts import fingerprint_tree, sha256_tree
from kubesage.runs.store import RunStore
from kubesage.targets.sagemaker.local_s3 import LocalS3

WHERE_IT_WRITES = ("CheckpointConfig", "ProcessingOutputConfig", "OutputDataConfig")


def input_uris(args: dict[str, Any]) -> list[str]:
    """The S3 URIs a job request reads."""
    uris = [i["S3Input"]["S3Uri"] for i in args.get("ProcessingInputs", []) if "S3Input" in i]
    uris += [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args.get("InputDataConfig", [])
             if "S3DataSource" in c["DataSource"]]
    return uris


def cache_key(step: dict[str, Any], args: dict[str, Any], environment: str, s3: LocalS3,
              filesystem_for: Callable[[dict[str, Any]], str]) -> str:
    """The key of a job step's resolved request ``args`` running in image ``environment``."""
    request = {k: v for k, v in args.items() if k not in WHERE_IT_WRITES}
    inputs = {}
    for uri in input_uris(args):
        path = s3.path(uri)
        aliased = any(path.startswith(os.path.abspath(f)) for f in s3.aliases.values())
        if os.path.exists(path):
            inputs[uri] = fingerprint_tree(path) if aliased else sha256_tree(path)
    for channel in args.get("InputDataConfig", []):
        fs = channel["DataSource"].get("FileSystemDataSource")
        if fs:
            inputs[f"fsx:{fs['FileSystemId']}{fs['DirectoryPath']}"] = fingerprint_tree(
                filesystem_for(fs))
    doc = {"type": step["Type"], "request": request, "environment": environment, "inputs": inputs}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def lookup(store: RunStore, s3: LocalS3, key: str) -> dict[str, Any] | None:
    """The entry for ``key`` with each output's local path, if every output is still intact."""
    entry = store.cache_get(key)
    if entry is None:
        return None
    outputs = {}
    for name, (uri, sha) in entry["outputs"].items():
        local = s3.path(uri)
        if not os.path.exists(local) or (sha and sha256_tree(local) != sha):
            return None  # overwritten or removed since: run again
        outputs[name] = (uri, local)
    return {**entry, "outputs": outputs}


def put(store: RunStore, key: str, properties: dict[str, Any], result: dict[str, Any],
        outputs: dict[str, tuple[str, str]], run_id: str) -> None:
    """Enter a finished job: its properties, result and outputs (URI and content hash)."""
    store.cache_put(key, {
        "properties": properties, "result": result, "run_id": run_id,
        "outputs": {n: [uri, sha256_tree(local)] for n, (uri, local) in outputs.items()},
    })
