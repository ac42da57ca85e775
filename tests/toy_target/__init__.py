"""A toy target, to show what a new target takes: this one package plus one ``register`` line.

It compiles a pipeline to a ``.toy`` file (the plan's steps as JSON), validates such a file, and
runs a pipeline in this very process, step by step in plan order, calling each component's
function through the runtime's ``invoke`` (the same call every contract makes). It says only
what differs: its runs go through the one run path (``kubesage.runs.launch``), with the same
record, lineage, store and cancellation as every run. It honours ``--tag`` and refuses the other
options by name (``Target.check``); its config is the local config.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from kubesage.dsl.channel import Channel, TaskOutput, evaluate
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Plan, Step
from kubesage.runs.artifacts import ArtifactStore, sha256_tree
from kubesage.runs.launch import RunSetup
from kubesage.runs.lifecycle import Run
from kubesage.runtime.invoke import Invocation, invoke, load_component
from kubesage.targets.base import Target
from kubesage.util.atomic import write_atomic

FORMAT = "kubesage-toy/v1"


class ToyTarget(Target):
    name = "toy"
    suffixes = (".toy",)
    description = "a plan as JSON, run in-process"
    contracts = ("local",)
    honours = frozenset({"tags"})

    def compile(self, pipeline: Pipeline, output: str, config_path: str | None = None,
                source: str = "") -> None:
        plan = Plan(pipeline, pipeline.resolve_parameters({}))
        doc = {"format": FORMAT, "pipeline": pipeline.name,
               "steps": [{"name": s.name, "component": s.task.spec.entry,
                          "after": [d.name for d in s.deps]} for s in plan.steps]}
        write_atomic(output, json.dumps(doc, indent=2) + "\n")

    def validate(self, path: str, config_path: str | None = None) -> str:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("format") != FORMAT:
            raise KubesageError(f"{path}: not a {FORMAT} file")
        names = {s["name"] for s in doc["steps"]}
        for step in doc["steps"]:
            for dep in step["after"]:
                if dep not in names:
                    raise KubesageError(f"{path}: step '{step['name']}' runs after unknown '{dep}'")
        return f"{path}: toy pipeline '{doc['pipeline']}' is valid ({len(names)} steps)"

    def logical_images(self, pipeline: Pipeline, config: Any) -> set[str]:
        return set()  # steps run in this process: no images

    def prepare(self, setup: RunSetup) -> InProcess:
        return InProcess(setup)


class InProcess:
    """The run path's execution: each step in plan order, in this process."""

    runner = "in-process"
    compiled = ""

    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.artifacts = ArtifactStore(setup.local.store)

    def step_image(self, logical: str) -> str:
        return logical

    def cancel(self) -> None:
        """Nothing runs outside this process."""

    def execute(self, run: Run) -> None:
        plan = self.setup.plan
        records = {r.name: r for r in run.record.steps}
        for step in plan.steps:
            rec = records[step.name]
            if any(records[d.name].status != "succeeded" for d in step.deps):
                rec.status = "not_run"
            elif not _holds(plan, step, records):
                rec.status = "skipped"
            else:
                rec.started = time.time()
                with contextlib.redirect_stdout(run.out):  # the step's output is log
                    _execute(plan, step, records, self.artifacts, run.run_id)
                rec.status, rec.ended = "succeeded", time.time()
            run.changed(rec)


def _value(records: dict[str, Any]) -> Any:
    return lambda producer, name: records[producer.name].returns[name]


def _holds(plan: Plan, step: Step, records: dict[str, Any]) -> bool:
    for cond in step.conditions:
        cmp = cond.comparison
        right = (plan.resolve(cmp.right, step, _value(records))
                 if isinstance(cmp.right, Channel) else cmp.right)
        if not evaluate(cmp.op, plan.resolve(cmp.left, step, _value(records)), right):
            return False
    return True


def _execute(plan: Plan, step: Step, records: dict[str, Any], artifacts: ArtifactStore,
             run_id: str) -> None:
    spec = step.task.spec
    params = {p.name: p.default for p in spec.parameters if not p.required}
    inputs = {}
    for arg, value in step.task.arguments.items():
        if isinstance(value, TaskOutput) and value.is_artifact:
            out = records[plan.producer(value, step).name].outputs[value.output]
            inputs[arg] = (out["path"], out["metadata"])
        else:
            params[arg] = plan.resolve(value, step, _value(records))
    folder = artifacts.step_dir(run_id, step.name)
    outputs = {a.name: os.path.join(folder, a.name) for a in spec.outputs}
    result = invoke(load_component(spec.entry), Invocation(params, inputs, outputs))
    rec = records[step.name]
    rec.parameters, rec.returns, rec.metrics = params, result.returns, result.metrics
    rec.outputs = {name: {"path": path, "sha256": sha256_tree(path),
                          "metadata": result.artifacts.get(name, {})}
                   for name, path in outputs.items()}


TARGET = ToyTarget()
