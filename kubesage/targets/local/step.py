"""Building one step: its parameter values, input artifacts, data mounts, image and cache key.

Values come from the plan (pipeline parameters, loop items) and from the records of the steps
that produced them (returned values, artifact folders). The cache key covers everything that
decides what the step produces (``kubesage.runs.cache``); a hit fills the step's record from the
earlier run without starting anything.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubesage.dsl.channel import PipelineArtifact, TaskOutput
from kubesage.dsl.types import coerce, masked
from kubesage.plan import Step
from kubesage.runs import cache
from kubesage.store.artifacts import cached_path

if TYPE_CHECKING:
    from kubesage.targets.local.runner import LocalRun


@dataclass
class StepCall:
    """What one step runs with."""

    params: dict[str, Any]
    inputs: dict[str, tuple[str, dict[str, Any]]]  # name -> (artifact folder, metadata)
    mounts: dict[str, str]  # path in the container -> host folder (read-only)
    image: str
    # inputs published by another checkout, fetched only when the step really runs
    remote: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fetch_inputs(self, run: LocalRun) -> None:
        """Bring the inputs this checkout does not hold from the team's artifact store."""
        for out in self.remote.values():
            if not os.path.exists(out["path"]):
                here(run, out)


def prepare(run: LocalRun, step: Step) -> StepCall:
    """Resolve the step's arguments and fill its record (parameters, inputs, cache key)."""
    record = run.records[step.name]
    task, spec = step.task, step.task.spec
    params = {p.name: p.default for p in spec.parameters if not p.required}
    inputs: dict[str, tuple[str, dict[str, Any]]] = {}
    extra_mounts = {}
    remote: dict[str, dict[str, Any]] = {}
    for arg, value in task.arguments.items():
        if isinstance(value, PipelineArtifact):  # given from outside: read-only, where it is
            given = run.record.inputs[value.name]
            inputs[arg] = (given["path"], given["metadata"])
            record.inputs[arg] = {"path": given["path"], "sha256": given["sha256"]}
            if not given["path"].startswith(os.path.abspath(run.config.store) + os.sep):
                extra_mounts[given["path"]] = given["path"]
        elif isinstance(value, TaskOutput) and value.is_artifact:
            producer = run.plan.producer(value, step)
            out = _local_name(run, run.records[producer.name].outputs[value.output])
            if out.get("uri"):
                remote[arg] = out
            path = out["path"]
            if spec.container and value.task.spec.container:  # a file or folder inside
                path = os.path.join(path, value.output)
            inputs[arg] = (path, out["metadata"])
            record.inputs[arg] = {"path": out["path"], "sha256": out["sha256"]}
        else:
            params[arg] = run.plan.resolve(value, step, run.output_value)
    for p in spec.parameters:
        if p.name in params and params[p.name] is not None:
            params[p.name] = coerce(p.type, params[p.name])
    record.parameters = masked(params, {p.name: p.type for p in spec.parameters})
    image = run.image(spec.image)
    record.environment_id = run.record.images[spec.image]  # read once, for the whole run
    record.cache_key = cache.cache_key(
        spec, record.environment_id, params,
        {k: v["sha256"] for k, v in record.inputs.items()},
        {name: run.record.data[name] for name, _ in spec.mounts},
        {"distribution": task.distribution.to_dict()},
    )
    return StepCall(params, inputs, {**step_mounts(spec.mounts, run.mounts), **extra_mounts}, image,
                    remote)


def from_cache(run: LocalRun, step: Step) -> bool:
    """Fill the step's record from the run it resumes (``rerun --from-failed``: a step that
    succeeded there with the same cache key, its outputs still on disk, whether the cache is on
    or not), else from the cache; False when neither has it."""
    record = run.records[step.name]
    before = run.resumes.get(step.name)
    if (before is not None and before.status == "succeeded" and before.cache_key == record.cache_key
            and all(os.path.isdir(o["path"]) for o in before.outputs.values())):
        hit: dict[str, Any] = {
            "outputs": before.outputs, "returns": before.returns, "metrics": before.metrics,
            "series": before.series, "run_id": run.record.rerun_of, "how": "reused"}
    elif step.task.cache and run.use_cache:
        found = cache.lookup(run.store, record.cache_key)
        if found is None:
            return False
        hit = found
    else:
        return False
    record.cached, record.cached_from = True, str(hit.get("run_id") or "")
    record.outputs = {name: _local_name(run, out) for name, out in hit["outputs"].items()}
    record.returns, record.metrics = hit["returns"], hit["metrics"]
    record.series = hit.get("series", {})
    record.status, record.ended = "succeeded", time.time()
    by = f" by {hit['user']}" if hit.get("user") else ""
    run.say(f"= {step.name} {hit.get('how', 'cached')} (from {hit['run_id']}{by})")
    return True


def _local_name(run: LocalRun, out: dict[str, Any]) -> dict[str, Any]:
    """A cached output as this checkout names it, not fetched yet: a step that reads it fetches
    it (``here``); a run cached through to its end downloads nothing."""
    home = os.path.abspath(run.config.store) + os.sep
    if not out.get("uri") or out["path"].startswith(home):
        return out
    return {**out, "path": cached_path(home, out["sha256"])}


def here(run: LocalRun, out: dict[str, Any]) -> dict[str, Any]:
    """An output as this checkout reads it: in its own folder where it was written here, else
    fetched from the shared artifact store into the local content-addressed cache
    (``kubesage.store.artifacts``): another engineer's folder is never read, even on one host."""
    home = os.path.abspath(run.config.store) + os.sep
    if not out.get("uri") or (out["path"].startswith(home) and os.path.exists(out["path"])):
        return out
    return {**out, "path": run.setup.workspace.artifacts.fetch(out["uri"], out["sha256"])}


def step_mounts(wanted: tuple[tuple[str, str], ...],
                mounts: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Container path -> host folder of the data mounts a component declares."""
    names = dict(wanted)
    return {target: src for name, (target, src) in mounts.items() if name in names}


def rewrite_paths(value: Any, mounts: dict[str, str]) -> Any:
    """A value under a mount's container path, onto its host folder (steps run without a
    container see host paths)."""
    if isinstance(value, str):
        for target, source in mounts.items():
            if value == target or value.startswith(target.rstrip("/") + "/"):
                return source + value[len(target.rstrip("/")):]
    return value
