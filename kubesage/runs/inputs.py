"""Input artifacts given to a run from outside: a local folder, or an output of an earlier run.

``kubesage run components/evaluate.py:evaluate --input data=data/shards --input
model=RUN_ID:train/model`` runs one component on its own; each input is resolved here to a folder
with its content hash (part of the step's cache key) and metadata, and kept in the run record, so
a re-run gets the same inputs (and refuses when they changed).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.runs.artifacts import sha256_tree

if TYPE_CHECKING:
    from kubesage.store import RunStore


class InputError(KubesageError):
    """An input artifact is missing, unknown, or names nothing that exists."""


def resolve_inputs(pipeline: Pipeline, given: dict[str, str], store: RunStore) -> dict[str, dict[str, Any]]:
    """Name -> {path, sha256, metadata, from} of every input artifact the pipeline takes."""
    wanted = {a.name: a for a in pipeline.artifacts}
    for name in given:
        if name not in wanted:
            raise InputError(f"'{pipeline.name}' has no input artifact '{name}'; it takes: "
                             f"{', '.join(wanted) or 'none'}")
    found = {}
    for name, spec in wanted.items():
        if name not in given:
            raise InputError(
                f"'{pipeline.name}' needs input artifact '{name}' ({spec.type}); pass --input "
                f"{name}=FOLDER or --input {name}=RUN_ID:step/output")
        found[name] = resolve(name, given[name], store)
    return found


def resolve(name: str, source: str, store: RunStore) -> dict[str, Any]:
    """One input: a folder (or file) on this machine, else ``RUN_ID:step/output``."""
    if os.path.exists(source):
        path = os.path.abspath(source)
        return {"path": path, "sha256": sha256_tree(path), "metadata": {}, "from": path}
    run_id, sep, where = source.partition(":")
    step, _, output = where.partition("/")
    if not (sep and step and output):
        raise InputError(f"--input {name}={source}: no such folder; pass an existing folder or "
                         "RUN_ID:step/output (an output of an earlier run)")
    try:
        record = store.get(run_id)
    except KeyError:
        raise InputError(f"--input {name}={source}: no run '{run_id}' in {store.location}; "
                         "'kubesage runs list' shows the runs") from None
    try:
        out = record.step(step).outputs[output]
    except KeyError:
        outputs = [f"{s.name}/{o}" for s in record.steps for o in s.outputs]
        raise InputError(f"--input {name}={source}: run {record.run_id} has no output '{step}/"
                         f"{output}'; it has: {', '.join(outputs) or 'none'}") from None
    if not os.path.exists(out["path"]):
        raise InputError(f"--input {name}={source}: its folder {out['path']} is gone")
    return {"path": out["path"], "sha256": out["sha256"], "metadata": out.get("metadata", {}),
            "from": f"{record.run_id}:{step}/{output}"}
