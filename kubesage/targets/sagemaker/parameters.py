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
from kubesage.dsl.types import coerce


def fan_out_parameters(pipeline: Pipeline) -> dict[str, str]:
    """Loop id -> name of the list parameter it loops over (one execution per item)."""
    from kubesage.dsl.channel import PipelineParam

    found = {}
    for group in pipeline.groups:
        if isinstance(group, ParallelFor) and isinstance(group.items, PipelineParam):
            found[group.id] = group.items.name
    return found


# SageMaker's name of each kubesage parameter type, declared once (lists and dicts travel as
# JSON text in String parameters), and the kubesage type each SageMaker type reads back as.
SAGEMAKER_TYPES = {"str": "String", "int": "Integer", "float": "Float", "bool": "Boolean",
                   "list": "String", "dict": "String", "secret": "String"}
KUBESAGE_TYPES = {"String": "str", "Integer": "int", "Float": "float", "Boolean": "bool"}


def compile_parameters(pipeline: Pipeline) -> dict[str, Any]:
    """Name -> SDK parameter, in the pipeline's declaration order."""
    from sagemaker.core.workflow.parameters import (
        ParameterBoolean,
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )

    classes = {"String": ParameterString, "Integer": ParameterInteger, "Float": ParameterFloat,
               "Boolean": ParameterBoolean}
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
            continue
        if default is not None:
            default = coerce(p.type, default)
            if p.type in ("list", "dict"):  # JSON text
                default = json.dumps(default)
        out[p.name] = classes[SAGEMAKER_TYPES[p.type]](name=p.name, default_value=default)
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
