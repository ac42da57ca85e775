"""Pipeline parameters: neutral typed parameters -> SageMaker typed parameters.

SageMaker knows String, Integer, Float and Boolean parameters; lists and dicts travel as JSON
strings. A list parameter that a ``ParallelFor`` loops over becomes a String parameter holding
one item: SageMaker pipelines have no loops, so submission starts one execution per item.
Container arguments, hyperparameters and metadata want strings: ``as_string`` converts.
"""

from __future__ import annotations

import json
from typing import Any

from kubesage.dsl.control import ParallelFor
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline


def fan_out_parameters(pipeline: Pipeline) -> dict[str, str]:
    """Loop id -> name of the list parameter it loops over (one execution per item)."""
    from kubesage.dsl.channel import PipelineParam

    found = {}
    for group in pipeline.groups:
        if isinstance(group, ParallelFor) and isinstance(group.items, PipelineParam):
            found[group.id] = group.items.name
    return found


def compile_parameters(pipeline: Pipeline) -> dict[str, Any]:
    """Name -> SDK parameter, in the pipeline's declaration order."""
    from sagemaker.core.workflow.parameters import (
        ParameterBoolean,
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )

    fan_out = set(fan_out_parameters(pipeline).values())
    out: dict[str, Any] = {}
    for p in pipeline.parameters:
        default = None if p.required else p.default
        if p.name in fan_out:
            if default:
                default = default[0]
                if not isinstance(default, str):
                    raise KubesageError(
                        f"pipeline '{pipeline.name}': ParallelFor over '{p.name}' compiles to one "
                        "SageMaker execution per item, passed as a string parameter; make the "
                        f"items strings (got {type(default).__name__})"
                    )
            out[p.name] = ParameterString(name=p.name, default_value=default or None)
        elif p.type == "str":
            out[p.name] = ParameterString(name=p.name, default_value=default)
        elif p.type == "int":
            out[p.name] = ParameterInteger(name=p.name, default_value=default)
        elif p.type == "float":
            out[p.name] = ParameterFloat(
                name=p.name, default_value=None if default is None else float(default))
        elif p.type == "bool":
            out[p.name] = ParameterBoolean(name=p.name, default_value=default)
        else:  # list, dict: JSON text
            out[p.name] = ParameterString(
                name=p.name, default_value=None if default is None else json.dumps(default))
    return out


def as_string(value: Any) -> Any:
    """A value where the API wants a string: literals as text, typed expressions via Join."""
    from sagemaker.core.helper.pipeline_variable import PipelineVariable
    from sagemaker.core.workflow.parameters import ParameterString

    if isinstance(value, ParameterString):
        return value
    if isinstance(value, PipelineVariable):
        return value.to_string()
    if isinstance(value, str):
        return value
    return json.dumps(value)
