"""One kfp container component per task, built with the kfp SDK's own ``@container_component``.

Each component has the task's typed interface (parameters with defaults, ``Input``/``Output``
artifacts, ``OutputPath`` for returned values) and runs the shared entry point with the executor
input: ``python -m kubesage.runtime kfp --entry MODULE:FUNC --executor-input {{$}}``.
A multi-node component becomes the TrainJob launcher with the same interface.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from kfp import dsl

from kubesage.dsl.interface import ComponentSpec, Distribution, Resources
from kubesage.dsl.types import PARAM_TYPES as KUBESAGE_TYPES
from kubesage.runtime import COMMAND
from kubesage.runtime.kfp import kfp_output_name
from kubesage.targets.kfp.config import KfpConfig
from kubesage.targets.kfp.trainjob import trainjob_template

# Kubeflow's names of kubesage's types, declared once: parameter type -> (IR ``parameterType``,
# v1 component YAML type); artifact type -> (kfp.dsl class, IR ``schemaTitle``, v1 type).
KFP_PARAMETER_TYPES = {"str": ("STRING", "String"), "int": ("NUMBER_INTEGER", "Integer"),
                       "float": ("NUMBER_DOUBLE", "Float"), "bool": ("BOOLEAN", "Boolean"),
                       "list": ("LIST", "List"), "dict": ("STRUCT", "Dict"),
                       "secret": ("STRING", "String")}
KFP_ARTIFACT_TYPES = {"Artifact": (dsl.Artifact, "system.Artifact"),
                      "Dataset": (dsl.Dataset, "system.Dataset"),
                      "Model": (dsl.Model, "system.Model"),
                      "Metrics": (dsl.Metrics, "system.Metrics")}
PARAM_TYPES: dict[str, type] = {name: t.python for name, t in KUBESAGE_TYPES.items()}
ARTIFACT_TYPES: dict[str, type] = {name: cls for name, (cls, _) in KFP_ARTIFACT_TYPES.items()}
IR_PARAMETER_TYPES = {ir: name for name, (ir, _) in KFP_PARAMETER_TYPES.items()
                      if name != "secret"}
SCHEMA_TITLES = {title: name for name, (_, title) in KFP_ARTIFACT_TYPES.items()}
V1_TYPES = {**{name: v1 for name, (_, v1) in KFP_PARAMETER_TYPES.items()},
            **{name: name for name in KFP_ARTIFACT_TYPES}}


def is_distributed(distribution: Distribution) -> bool:
    """Whether the step runs on several nodes (a TrainJob) rather than in one pod."""
    return distribution.nodes > 1


def _signature(spec: ComponentSpec) -> inspect.Signature:
    P = inspect.Parameter
    required, optional = [], []
    for p in spec.parameters:
        if p.required:
            required.append(P(p.name, P.POSITIONAL_OR_KEYWORD, annotation=PARAM_TYPES[p.type]))
        else:
            optional.append(P(p.name, P.POSITIONAL_OR_KEYWORD, annotation=PARAM_TYPES[p.type],
                              default=p.default))
    artifacts = [P(a.name, P.POSITIONAL_OR_KEYWORD, annotation=dsl.Input[ARTIFACT_TYPES[a.type]])
                 for a in spec.inputs]
    artifacts += [P(a.name, P.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[ARTIFACT_TYPES[a.type]])
                  for a in spec.outputs]
    artifacts += [P(r.name, P.POSITIONAL_OR_KEYWORD, annotation=dsl.OutputPath(PARAM_TYPES[r.type]))
                  for r in spec.returns]
    return inspect.Signature(required + artifacts + optional)


def container_args(spec: ComponentSpec, resources: Resources, distribution: Distribution,
                   config: KfpConfig) -> list[str]:
    """Arguments of the entry point: the plain contract, or the TrainJob launcher's."""
    # Checkpoints live on the checkpoint volume, per run and task, so a retried attempt resumes.
    where = ["--job-id", dsl.PIPELINE_JOB_ID_PLACEHOLDER, "--task-id", dsl.PIPELINE_TASK_ID_PLACEHOLDER]
    if config.checkpoint_claim:
        where += ["--checkpoint-root", config.checkpoint_path]
    if not is_distributed(distribution):
        return ["kfp", "--entry", spec.entry, *where,
                "--executor-input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
    template = trainjob_template(spec, resources, distribution, config)
    return ["kfp", "trainjob", "--entry", spec.entry, *where,
            "--template", json.dumps(template, sort_keys=True, separators=(",", ":")),
            "--poll-seconds", str(config.trainer_poll_s),
            "--executor-input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]


def container_component(name: str, spec: ComponentSpec, resources: Resources,
                        distribution: Distribution, config: KfpConfig) -> Any:
    """A kfp ``ContainerComponent`` named ``name`` (the task name) for ``spec``."""
    if spec.container is not None:
        # Its own image, as shared; a catalog may have pinned it (a digest is used as it is).
        pinned = spec.image != spec.container.image
        return imported_component(name, spec, config.image(spec.image) if pinned else spec.image)
    image = config.image(spec.image)
    args = container_args(spec, resources, distribution, config)

    def body(*_: Any) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image=image, command=list(COMMAND), args=list(args))

    body.__signature__ = _signature(spec)  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = name
    body.__doc__ = f"{spec.description}\n\nkubesage component {spec.name}@{spec.version} ({spec.entry})"
    component = dsl.container_component(body)
    # A lone return value is "Output" in KFP, a name kfp refuses for a function argument; the
    # command never names it (the executor input carries every path), so rename it afterwards.
    outputs = component.component_spec.outputs or {}
    component.component_spec.outputs = {kfp_output_name(k) if any(r.name == k for r in spec.returns)
                                        else k: v for k, v in outputs.items()} or None
    return component




def imported_component(name: str, spec: ComponentSpec, image: str) -> Any:
    """A container component (imported Kubeflow YAML) as kfp loads one: its own image and command.

    Written back in the component YAML form teams share and loaded with ``kfp.components``;
    the command line keeps Kubeflow's own placeholders, which the KFP backend resolves.
    """
    import yaml
    from kfp import components

    assert spec.container is not None

    def declared(p: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"name": p.name, "type": V1_TYPES[p.type]}
        if not getattr(p, "required", True):
            default = json.dumps(p.default) if isinstance(p.default, list | dict) else p.default
            out.update({"optional": True} if p.default is None else {"default": default})
        return out

    doc = {
        "name": name,
        "description": spec.description,
        "inputs": [declared(p) for p in (*spec.parameters, *spec.inputs)],
        "outputs": [declared(p) for p in (*spec.outputs, *spec.returns)],
        "implementation": {"container": {
            "image": image, "command": list(spec.container.command),
            "args": list(spec.container.args),
            **({"env": dict(spec.container.env)} if spec.container.env else {})}},
    }
    return components.load_component_from_text(yaml.safe_dump(doc, sort_keys=False))
