"""Kubeflow component YAML in and out, for teams that share components that way.

Out: the file is what the kfp SDK itself writes for a container component (compiled with
``kfp.compiler.Compiler``), so ``kfp.components.load_component_from_file`` loads it and any KFP
pipeline can call it; the container runs kubesage's entry point in the component's image.

In: a component YAML (the v1 ``implementation: container:`` form or a v2 IR file) is read with
``kfp.components`` and becomes a kubesage container component, whose command line keeps
Kubeflow's placeholders (``kubesage.dsl.container``) for each target to resolve.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

from kubesage.dsl.component import Component
from kubesage.dsl.container import ContainerSpec, check_placeholders
from kubesage.dsl.errors import DefinitionError
from kubesage.dsl.interface import NO_DEFAULT, ArtifactSpec, ComponentSpec, ParameterSpec
from kubesage.targets.kfp.compiler import write_compiled
from kubesage.targets.kfp.components import IR_PARAMETER_TYPES, SCHEMA_TITLES, container_component
from kubesage.targets.kfp.config import KfpConfig


def export_component(spec: ComponentSpec, output: str, config: KfpConfig) -> str:
    """Write ``spec`` as a KFP component YAML to ``output`` (atomically)."""
    component = container_component(spec.name, spec, spec.resources, spec.distribution, config)
    return write_compiled(component, output, f"component '{spec.name}'")


def import_component(path: str, version: str = "0.1.0") -> Component[..., Any]:
    """A kubesage component from a Kubeflow component YAML file.

    Parameter and artifact types map onto kubesage's (``String`` -> ``str``, ``Dataset`` ->
    ``Dataset``; artifact types kubesage does not have become ``Artifact``); output parameters
    become the component's returned values. Raises ``DefinitionError`` naming the file and the
    problem for anything kubesage cannot run.
    """
    from google.protobuf import json_format
    from kfp import components

    if not os.path.isfile(path):
        raise DefinitionError(f"{path}: no such component file")
    try:
        loaded = components.load_component_from_file(path)
        ir = json_format.MessageToDict(loaded.pipeline_spec)
    except Exception as e:  # kfp raises many kinds for a bad file
        raise DefinitionError(f"{path} is not a Kubeflow component YAML that kfp can load: {e}") from None
    executors = ir.get("deploymentSpec", {}).get("executors", {})
    comps = ir.get("components", {})
    if len(executors) != 1 or len(comps) != 1:
        _refuse(path, f"it holds {len(comps)} components (a pipeline?); import one component per file")
    (executor,) = executors.values()
    if "container" not in executor:
        _refuse(path, "it is not a container component")
    (definition,) = comps.values()
    name = loaded.component_spec.name.replace("_", "-")
    parameters, inputs = _inputs(path, definition.get("inputDefinitions", {}))
    returns = tuple(ParameterSpec(n, _parameter_type(path, n, d)) for n, d in
                    sorted(definition.get("outputDefinitions", {}).get("parameters", {}).items()))
    outputs = tuple(ArtifactSpec(n, _artifact_type(d)) for n, d in
                    sorted(definition.get("outputDefinitions", {}).get("artifacts", {}).items()))
    c = executor["container"]
    image = c["image"]
    if "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        image += ":latest"  # as Docker and Kubernetes read an untagged name
    container = ContainerSpec(
        image=image, command=tuple(c.get("command", ())), args=tuple(c.get("args", ())),
        env=tuple(sorted((e["name"], e.get("value", "")) for e in c.get("env", []))))
    check_placeholders(name, container, {p.name for p in parameters} | {a.name for a in inputs},
                       {a.name for a in outputs} | {r.name for r in returns})
    spec = ComponentSpec(
        name=name, version=version, entry="", image=container.image,
        description=loaded.component_spec.description or "", parameters=parameters,
        inputs=inputs, outputs=outputs, returns=returns, container=container)

    def imported(**_: Any) -> NoReturn:
        raise DefinitionError(f"component '{name}' (imported from {path}) runs its own container; "
                              "call it inside a @pipeline, not as a Python function")

    imported.__name__ = imported.__qualname__ = name.replace("-", "_")
    imported.__doc__ = spec.description
    return Component(imported, spec)


def _refuse(path: str, why: str) -> NoReturn:
    raise DefinitionError(f"{path}: cannot import this Kubeflow component: {why}")


def _inputs(path: str, defs: dict[str, Any]) -> tuple[tuple[ParameterSpec, ...], tuple[ArtifactSpec, ...]]:
    parameters = []
    for name, d in sorted(defs.get("parameters", {}).items()):
        default = d.get("defaultValue", None if d.get("isOptional") else NO_DEFAULT)
        ptype = _parameter_type(path, name, d)
        if ptype == "int" and isinstance(default, float) and default.is_integer():
            default = int(default)  # protobuf's Value has only doubles
        parameters.append(ParameterSpec(name, ptype, default))
    artifacts = []
    for name, d in sorted(defs.get("artifacts", {}).items()):
        if d.get("isOptional"):
            _refuse(path, f"input artifact '{name}' is optional; kubesage needs every artifact "
                          "input connected (make it required)")
        if d.get("isArtifactList"):
            _refuse(path, f"input '{name}' is a list of artifacts, which kubesage does not pass")
        artifacts.append(ArtifactSpec(name, _artifact_type(d)))
    return tuple(parameters), tuple(artifacts)


def _parameter_type(path: str, name: str, d: dict[str, Any]) -> str:
    kind = d.get("parameterType", "")
    if kind not in IR_PARAMETER_TYPES:
        _refuse(path, f"'{name}' has type {kind or '(none)'}; kubesage passes "
                      f"{', '.join(IR_PARAMETER_TYPES)}")
    return IR_PARAMETER_TYPES[kind]


def _artifact_type(d: dict[str, Any]) -> str:
    return SCHEMA_TITLES.get(d.get("artifactType", {}).get("schemaTitle", ""), "Artifact")
