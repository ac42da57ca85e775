"""Re-run a recorded run exactly: same pipeline, parameters and images, after checking the data."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from kubesage.dsl.errors import KubesageError
from kubesage.loader import load_pipeline, project_root
from kubesage.runs.artifacts import fingerprint_tree
from kubesage.runs.record import RunRecord
from kubesage.runs.store import RunStore
from kubesage.targets.local.config import LocalConfig
from kubesage.targets.local.runner import runner_for


class RerunError(KubesageError):
    """A run cannot be reproduced: its pipeline, images or data have changed."""


def rerun(run_id: str, config: LocalConfig, log: TextIO = sys.stderr) -> RunRecord:
    """Execute run ``run_id`` again (no cache) and return the new run's record."""
    try:
        old = RunStore(config.store).get(run_id)
    except KeyError:
        raise RerunError(f"no run '{run_id}' in {config.store}; 'kubesage runs list' shows them") from None
    commit = old.git.get("commit", "")
    at_commit = f" (it ran at git commit {commit[:12]}; check that out)" if commit else ""
    if not old.pipeline_file or not os.path.isfile(old.pipeline_file):
        raise RerunError(f"run {old.run_id}: its pipeline file {old.pipeline_file or '(none)'} is gone"
                         + at_commit)
    definition, path = load_pipeline(f"{old.pipeline_file}:{old.pipeline}")
    pipeline = definition.build()
    if pipeline.digest() != old.pipeline_hash:
        raise RerunError(f"pipeline '{old.pipeline}' in {path} has changed since run {old.run_id}"
                         + at_commit)
    for name, fingerprint in old.data.items():
        folder = config.mounts.get(name, "")
        current = fingerprint_tree(folder) if os.path.isdir(folder) else "(missing)"
        if current != fingerprint:
            raise RerunError(
                f"run {old.run_id}: the data under mounts.{name} ({folder or 'not configured'}) "
                f"has changed since it ran (fingerprint {fingerprint[:12]} -> {current[:12]}); "
                "restore that data to re-run it")
    runner = runner_for(old.runner, config, project_root(path), log=log)
    pins: dict[str, str] = {}
    for image, recorded in old.images.items():
        if old.runner == "docker":
            try:
                runner.executor.environment_id(recorded)
            except KubesageError:
                raise RerunError(f"run {old.run_id}: image {image} ({recorded[:19]}) no longer "
                                 "exists, so the run cannot be reproduced") from None
            pins[image] = recorded
        elif runner.executor.environment_id(image) != recorded:
            raise RerunError(f"run {old.run_id}: the code has changed since it ran" + at_commit)
    return runner.run(pipeline, old.parameters, pipeline_file=path, images=pins, use_cache=False,
                      rerun_of=old.run_id, tags=old.tags)
