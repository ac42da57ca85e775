"""Re-run a recorded run exactly, on the target it ran on: the same pipeline, parameters, config
and images (pinned by ID), with the cache off, after checking that nothing changed since."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from kubesage.dsl.errors import KubesageError
from kubesage.loader import load_pipeline
from kubesage.runs.artifacts import fingerprint_tree
from kubesage.runs.inputs import resolve
from kubesage.runs.record import RunRecord
from kubesage.runs.store import RunStore
from kubesage.targets import base as targets


class RerunError(KubesageError):
    """A run cannot be reproduced: its pipeline, config, images or data have changed."""


def rerun(store: RunStore, run_id: str, log: TextIO | None = None) -> RunRecord:
    """Execute run ``run_id`` again (no cache) on its own target; the new run's record."""
    try:
        old = store.get(run_id)
    except KeyError:
        raise RerunError(f"no run '{run_id}' in {store.root}; 'kubesage runs list' shows them") from None
    commit = old.git.get("commit", "")
    at_commit = f" (it ran at git commit {commit[:12]}; check that out)" if commit else ""
    if not old.pipeline_file or not os.path.isfile(old.pipeline_file):
        raise RerunError(f"run {old.run_id}: its pipeline file {old.pipeline_file or '(none)'} is gone"
                         + at_commit)
    if old.config and not os.path.isfile(old.config):
        raise RerunError(f"run {old.run_id}: its {old.target} config {old.config} is gone; restore it")
    definition, path = load_pipeline(f"{old.pipeline_file}:{old.pipeline}")
    pipeline = definition.build()
    if pipeline.digest() != old.pipeline_hash:
        raise RerunError(f"pipeline '{old.pipeline}' in {path} has changed since run {old.run_id}"
                         + at_commit)
    target = targets.get(old.target)
    config = old.config or None
    local = target.local_config(config)
    for name, fingerprint in old.data.items():
        folder = local.mounts.get(name, "")
        current = fingerprint_tree(folder) if os.path.isdir(folder) else "(missing)"
        if current != fingerprint:
            raise RerunError(
                f"run {old.run_id}: the data under mounts.{name} ({folder or 'not configured'}) "
                f"has changed since it ran (fingerprint {fingerprint[:12]} -> {current[:12]}); "
                "restore that data to re-run it")
    for name, given in old.inputs.items():
        now = resolve(name, given["from"], store) if _exists(given["from"], store) else None
        if now is None or now["sha256"] != given["sha256"]:
            raise RerunError(f"run {old.run_id}: its input artifact '{name}' ({given['from']}) "
                             "has changed or is gone since it ran; restore it to re-run the run")
    pins = _pins(old, path, at_commit)
    if pins:  # the code the run ran, not the working tree's: say so
        print(f"re-running {old.run_id} with the images it ran, pinned by ID (their code is as "
              f"of that run{', git ' + commit[:12] if commit else ''}, not the working tree's)",
              file=log or sys.stderr, flush=True)
    runner = old.runner if old.target == "local" else None
    options = targets.RunOptions(params=old.parameters, config=config, pipeline_file=path,
                                 runner=runner, tags=old.tags, use_cache=False, images=pins,
                                 rerun_of=old.run_id, log=log,
                                 inputs={name: given["from"] for name, given in old.inputs.items()})
    return target.run(pipeline, options)


def _exists(source: str, store: RunStore) -> bool:
    try:
        resolve("input", source, store)
    except KubesageError:
        return False
    return True


def _pins(old: RunRecord, path: str, at_commit: str) -> dict[str, str]:
    """Logical image -> the image ID the run used; a subprocess run checks its code hash."""
    if old.runner == "subprocess":
        from kubesage.loader import project_root
        from kubesage.targets.local.process_executor import ProcessExecutor

        executor = ProcessExecutor(project_root(path))
        for image, recorded in old.images.items():
            if executor.environment_id(image) != recorded:
                raise RerunError(f"run {old.run_id}: the code has changed since it ran" + at_commit)
        return {}
    import docker
    import docker.errors

    client = docker.from_env()
    for image, recorded in old.images.items():
        try:
            client.images.get(recorded)
        except docker.errors.ImageNotFound:
            raise RerunError(f"run {old.run_id}: image {image} ({recorded[:19]}) no longer "
                             "exists, so the run cannot be reproduced") from None
    return dict(old.images)
