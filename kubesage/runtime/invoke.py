"""Call a component function with typed arguments and collect what it produced.

Every contract (local, Kubeflow, SageMaker) reduces its own conventions to the same call:
parameter values, input artifact directories and output artifact directories in, output
parameters, artifact metadata and metrics out.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.component import Component
from kubesage.dsl.interface import ComponentSpec
from kubesage.dsl.types import ARTIFACT_TYPES, Artifact, Metrics


@dataclass
class Invocation:
    """What one step needs: values for parameters, paths for artifacts."""

    parameters: dict[str, Any]
    inputs: dict[str, tuple[str, dict[str, Any]]]  # name -> (path, metadata)
    outputs: dict[str, str]  # name -> directory to fill


@dataclass
class Result:
    """What one step produced."""

    returns: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> metadata
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"returns": self.returns, "artifacts": self.artifacts, "metrics": self.metrics,
                "series": self.series}


def load_component(entry: str) -> Component[Any, Any]:
    """Import ``module:qualname`` and return the component object it names."""
    module_name, _, qualname = entry.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Component):
        raise TypeError(f"{entry} is not a @component (got {type(obj).__name__})")
    return obj


def invoke(component: Component[Any, Any], call: Invocation) -> Result:
    """Run the component function; output directories are created before it starts."""
    spec: ComponentSpec = component.spec
    kwargs: dict[str, Any] = dict(call.parameters)
    for a in spec.inputs:
        path, metadata = call.inputs[a.name]
        kwargs[a.name] = ARTIFACT_TYPES[a.type](path, metadata)
    produced: dict[str, Artifact] = {}
    for a in spec.outputs:
        os.makedirs(call.outputs[a.name], exist_ok=True)
        produced[a.name] = kwargs[a.name] = ARTIFACT_TYPES[a.type](call.outputs[a.name])
    value = component.python_func(**kwargs)
    result = Result()
    if len(spec.returns) == 1 and spec.returns[0].name == "output":
        result.returns["output"] = value
    elif spec.returns:
        result.returns = {r.name: getattr(value, r.name) for r in spec.returns}
    for name, art in produced.items():
        if isinstance(art, Metrics):
            art.save()
            result.metrics.update(art.metadata)
            result.series.update(art.series)
        result.artifacts[name] = art.metadata
    return result
