"""The neutral model: components, pipelines, channels and control flow. No backend imports."""

from kubesage.dsl.channel import Comparison
from kubesage.dsl.component import Component, component
from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import (
    CycleError,
    DefinitionError,
    DuplicateNameError,
    KubesageError,
    MissingInputError,
    ParameterError,
    TypeMismatchError,
    UnknownInputError,
)
from kubesage.dsl.interface import ComponentSpec, Distribution, Resources, Serving
from kubesage.dsl.pipeline import Pipeline, PipelineDefinition, pipeline
from kubesage.dsl.task import Task
from kubesage.dsl.types import Artifact, Dataset, Input, Metrics, Model, Output, Secret

__all__ = [
    "Artifact", "Comparison", "Component", "ComponentSpec", "Condition", "CycleError", "Dataset",
    "DefinitionError", "Distribution", "DuplicateNameError", "Input", "KubesageError", "Metrics",
    "MissingInputError", "Model", "Output", "ParallelFor", "ParameterError", "Pipeline",
    "PipelineDefinition", "Resources", "Secret", "Serving", "Task", "TypeMismatchError", "UnknownInputError",
    "component", "pipeline",
]
