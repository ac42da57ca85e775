"""The step cache of local SageMaker runs, keyed as the service keys it.

SageMaker reuses an earlier run of a step with ``CacheConfig`` while the attributes its
documentation lists for that step type are unchanged ("Default cache key attributes by pipeline
step type", https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-default-keys.html):
``CACHE_KEY_ATTRIBUTES`` below, resolved as the job request has them. Everything else (where
outputs go, instance types, the role, stopping conditions) changes no key. A transform's key
holds its ``ModelName``, which a ``ModelStep`` makes anew in each execution: as on the service,
a batch transform behind a model step runs again every time (and the step reading its output
after it). Tuning steps have a list there too; kubesage compiles none. Model creation and
registration, condition and fail steps have no cache. A hit is an earlier run younger than the
step's ``ExpireAfter``.

Locally the key also covers the image's ID and the content of the inputs: the service trusts
that an S3 URI (and an image URI) names fixed content; a local folder may change. Entries live
in the local run store's cache index; a hit whose outputs were removed or overwritten since is a
miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.artifacts import fingerprint_tree, sha256_tree
from kubesage.store import RunStore
from kubesage.targets.sagemaker.local_s3 import LocalS3

CACHE_KEY_ATTRIBUTES = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig",
                 "DebugRuleConfigurations", "Environment", "HyperParameters", "InputDataConfig"),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}

# ISO 8601 durations as CacheConfig takes them ("P30D", "30d", "T16m", "30dT5h"), in seconds
_DURATION = re.compile(r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?)?$", re.IGNORECASE)
_UNIT_S = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60)


def expire_after_s(duration: str) -> float:
    """``CacheConfig.ExpireAfter`` in seconds."""
    match = _DURATION.match(duration.strip())
    if not match or not any(match.groups()):
        raise KubesageError(f"CacheConfig ExpireAfter {duration!r} is not an ISO 8601 duration; "
                            "write it as P30D, PT12H or P4DT12H")
    return float(sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_S, strict=True)
                     if n))


def input_uris(args: dict[str, Any]) -> list[str]:
    """The S3 URIs a job request reads."""
    uris = [i["S3Input"]["S3Uri"] for i in args.get("ProcessingInputs", []) if "S3Input" in i]
    uris += [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args.get("InputDataConfig", [])
             if "S3DataSource" in c["DataSource"]]
    if "TransformInput" in args:
        uris.append(args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    return uris


def cache_key(step: dict[str, Any], args: dict[str, Any], environment: str, s3: LocalS3,
              filesystem_for: Callable[[dict[str, Any]], str]) -> str:
    """The key of a job step's resolved request ``args`` running in image ``environment``."""
    request = {k: args[k] for k in CACHE_KEY_ATTRIBUTES[step["Type"]] if k in args}
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


def lookup(store: RunStore, s3: LocalS3, key: str,
           expire_after: str | None = None) -> dict[str, Any] | None:
    """The entry for ``key`` with each output's local path, if it is younger than
    ``expire_after`` (an ISO 8601 duration) and every output is still intact."""
    entry = store.cache_get(key)
    if entry is None:
        return None
    if expire_after and time.time() - entry.get("at", 0.0) > expire_after_s(expire_after):
        return None
    outputs = {}
    for name, (uri, sha) in entry["outputs"].items():
        local = s3.path(uri)
        if not os.path.exists(local) or (sha and sha256_tree(local) != sha):
            return None  # overwritten or removed since: run again
        outputs[name] = (uri, local)
    return {**entry, "outputs": outputs}


def put(store: RunStore, key: str, properties: dict[str, Any], result: dict[str, Any],
        outputs: dict[str, tuple[str, str]], run_id: str, since: float = 0.0) -> None:
    """Enter a finished job: its properties, result and outputs (URI and content hash); an
    entry made before ``since`` (the job's start: one found unusable then) is replaced."""
    store.cache_put(key, {
        "properties": properties, "result": result, "run_id": run_id, "at": time.time(),
        "outputs": {n: [uri, sha256_tree(local)] for n, (uri, local) in outputs.items()},
    }, since=since)
