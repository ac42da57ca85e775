"""Offline validation of a SageMaker Pipelines definition against botocore's service model.

Each step's ``Arguments`` is checked as the request the service will send on the step's behalf
(``CreateProcessingJob``, ``CreateTrainingJob``, ``CreateModelPackage``, ...): pipeline
expressions are first replaced with placeholders of the type they produce (a ``Get`` of an
Integer parameter is an integer, a ``Std:Join`` a string), then botocore's ``ParamValidator``
reports unknown fields, wrong types and missing required fields; enums (``FSxLustre``, ...)
are checked separately, since botocore leaves them to the service; instance types per job kind
and region with the other service limits (``limits``, ``instances``).
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.targets.sagemaker.expressions import is_expression, references, step_of
from kubesage.targets.sagemaker.instances import KINDS
from kubesage.targets.sagemaker.limits import all_steps, limit_problems

OPERATIONS = {
    "Processing": "CreateProcessingJob",
    "Training": "CreateTrainingJob",
    "Transform": "CreateTransformJob",
    "Tuning": "CreateHyperParameterTuningJob",
    "RegisterModel": "CreateModelPackage",
    "Model": "CreateModel",
}
# The service fills these in per execution; the SDK leaves them out of the definition.
_FILLED_BY_SERVICE = {
    "CreateProcessingJob": {"ProcessingJobName": "placeholder-job"},
    "CreateTrainingJob": {"TrainingJobName": "placeholder-job"},
    "CreateTransformJob": {"TransformJobName": "placeholder-job"},
    "CreateHyperParameterTuningJob": {"HyperParameterTuningJobName": "placeholder"},
    "CreateModel": {"ModelName": "placeholder-model"},
}
_PARAM_PLACEHOLDERS = {"String": "placeholder", "Integer": 1, "Float": 1.0, "Boolean": True}
_STEP_TYPES = set(OPERATIONS) | {"Condition", "Fail", "Lambda", "Callback", "QualityCheck",
                                 "ClarifyCheck", "EMR", "AutoML"}
_INSTANCE_ENUMS = {shape for shape, _ in KINDS.values()}  # per kind and region in ``instances``
_CONDITIONS = {"Equals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan",
               "LessThanOrEqualTo", "In", "Not", "Or"}


class DefinitionInvalid(KubesageError):
    """A compiled SageMaker definition would be refused by the service."""


@functools.cache
def _service_model() -> Any:
    """botocore's SageMaker service model, parsed once per process (it is several MB of JSON,
    read again by every new botocore session)."""
    from kubesage.targets.sagemaker.session import botocore_session

    return botocore_session().get_service_model("sagemaker")


def validate_definition(doc: Any, where: str = "definition", region: str | None = None) -> list[str]:
    """Every problem found in a parsed definition, one message each (empty when valid); instance
    types are checked against ``region`` when given."""
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("Steps"), list):
        return [f"{where}: not a SageMaker pipeline definition (no 'Steps' list)"]
    if doc.get("Version") != "2020-12-01":
        problems.append(f"{where}: 'Version' is {doc.get('Version')!r}; expected '2020-12-01'")
    params: dict[str, tuple[str, Any]] = {}  # name -> (type, default)
    for p in doc.get("Parameters", []):
        ptype = p.get("Type", "String")
        if ptype not in _PARAM_PLACEHOLDERS:
            problems.append(f"parameter '{p.get('Name')}': type {ptype!r} is not one of "
                            f"{', '.join(_PARAM_PLACEHOLDERS)}")
        params[p.get("Name", "")] = (ptype, p.get("DefaultValue"))
    steps: list[Any] = list(all_steps(doc["Steps"]))
    names = Counter(s.get("Name") for s in steps)
    for name, count in names.items():
        if count > 1:
            problems.append(f"step '{name}': {count} steps share this name; step names must be unique")
    property_files = {(s.get("Name"), pf.get("PropertyFileName"))
                      for s in steps for pf in s.get("PropertyFiles", [])}
    model = _service_model()
    for step in steps:
        problems += _check_step(step, model, params, set(names), property_files)
    return problems + limit_problems(doc.get("Parameters", []), steps, region)


def _check_step(step: dict[str, Any], model: Any, params: dict[str, tuple[str, Any]],
                names: set[str],
                property_files: set[tuple[Any, Any]]) -> list[str]:
    name, stype = step.get("Name"), step.get("Type")
    where = f"step '{name}'"
    if stype not in _STEP_TYPES:
        return [f"{where}: unknown step type {stype!r}; use one of {', '.join(sorted(_STEP_TYPES))}"]
    problems = []
    args = step.get("Arguments", {})
    for path in references(step):
        if path.startswith("Parameters.") and path.split(".", 1)[1] not in params:
            problems.append(f"{where}: refers to {path}, but the pipeline declares no such "
                            "parameter; add it to Parameters or fix the reference")
        target = step_of(path)
        if target is not None and target not in names:
            problems.append(f"{where}: refers to {path}, but there is no step '{target}'")
        if target is not None and ".PropertyFiles." in path:
            pf = path.split(".PropertyFiles.", 1)[1]
            if (target, pf) not in property_files:
                problems.append(f"{where}: JsonGet reads property file '{pf}' of step "
                                f"'{target}', which declares no such PropertyFile")
    for dep in step.get("DependsOn", []):
        if dep not in names:
            problems.append(f"{where}: DependsOn '{dep}', which is not a step of this pipeline")
    if stype == "Condition":
        for i, cond in enumerate(args.get("Conditions", [])):
            if cond.get("Type") not in _CONDITIONS:
                problems.append(f"{where}: Conditions[{i}].Type {cond.get('Type')!r} is not one of "
                                f"{', '.join(sorted(_CONDITIONS))}")
        return problems
    if stype == "Fail" or stype not in OPERATIONS:
        return problems
    operation = OPERATIONS[stype]
    shape = model.operation_model(operation).input_shape
    request = {**_FILLED_BY_SERVICE.get(operation, {}), **_placeholders(args, shape, params)}
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        for line in report.generate_report().splitlines():
            problems.append(f"{where} ({operation}): {line}")
    problems += [f"{where} ({operation}): {p}" for p in _enum_problems(request, shape, "")]
    return problems


def _placeholders(value: Any, shape: Any, params: dict[str, tuple[str, Any]]) -> Any:
    """``value`` with every expression replaced by a value of the type it produces: a
    parameter's default where it has one (so a bad default instance type is caught)."""
    if is_expression(value):
        (fn, arg), = value.items()
        if fn == "Std:Join":  # always text: fine where the API wants a string, wrong elsewhere
            return _typed(shape) if shape is not None and shape.type_name == "string" else "text"
        if fn == "Get" and isinstance(arg, str) and arg.startswith("Parameters."):
            ptype, default = params.get(arg.split(".", 1)[1], ("String", None))
            if ptype == "String" and shape is not None and shape.type_name == "string":
                return default if isinstance(default, str) else _typed(shape)
            return default if default is not None else _PARAM_PLACEHOLDERS.get(ptype, "text")
        return _typed(shape)  # a step property, JsonGet or execution variable: as the API wants
    if shape is None:
        return value
    if isinstance(value, dict):
        if shape.type_name == "map":
            return {k: _placeholders(v, shape.value, params) for k, v in value.items()}
        if shape.type_name == "structure":
            return {k: _placeholders(v, shape.members.get(k), params) for k, v in value.items()}
    if isinstance(value, list) and shape.type_name == "list":
        return [_placeholders(v, shape.member, params) for v in value]
    return value


def _typed(shape: Any) -> Any:
    if shape is None:
        return "placeholder"
    kind = shape.type_name
    if kind == "string":
        return shape.enum[0] if shape.enum else "placeholder"
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "list":
        return []
    if kind in ("map", "structure"):
        return {}
    return "placeholder"


def _enum_problems(value: Any, shape: Any, path: str) -> list[str]:
    """What botocore's model says and its ``ParamValidator`` leaves to the service: enums (instance
    types, ...), the most items of a list (10 processing inputs, 20 training channels, ...), the
    longest string and the largest number."""
    if shape is None:
        return []
    limit = shape.metadata.get("max")
    if shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum and shape.name not in _INSTANCE_ENUMS:
            close = [e for e in shape.enum if e.split(".")[:2] == value.split(".")[:2]][:6]
            hint = f"; e.g. {', '.join(close or shape.enum[:6])}"
            return [f"{path}: {value!r} is not a valid {shape.name} ({len(shape.enum)} allowed"
                    f"{hint})"]
        if limit is not None and len(value) > limit:
            return [f"{path}: {len(value)} characters, more than the {limit} the service takes; "
                    "shorten it"]
        return []
    if shape.type_name in ("integer", "long") and isinstance(value, int) and limit is not None:
        if value > limit:
            return [f"{path}: {value} is more than the service's maximum {limit}"]
        return []
    found = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            found += _enum_problems(v, shape.members.get(k), f"{path}.{k}" if path else k)
    elif shape.type_name == "list" and isinstance(value, list):
        if limit is not None and len(value) > limit:
            found.append(f"{path}: {len(value)} items, more than the {limit} the service takes "
                         "per job; merge some into one artifact or split the step")
        for i, v in enumerate(value):
            found += _enum_problems(v, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        if limit is not None and len(value) > limit:
            found.append(f"{path}: {len(value)} entries, more than the {limit} the service takes")
        for k, v in value.items():
            found += _enum_problems(v, shape.value, f"{path}.{k}")
    return found


def validate_definition_file(path: str, region: str | None = None) -> str:
    """Validate ``path`` (instance types in ``region``, when given); a one-line summary, or
    ``DefinitionInvalid`` listing every problem."""
    if not os.path.isfile(path):
        raise DefinitionInvalid(f"{path} does not exist; compile one with 'kubesage compile "
                                "PIPELINE --target sagemaker -o FILE'")
    with open(path) as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise DefinitionInvalid(f"{path}: not valid JSON: {e}") from None
    problems = validate_definition(doc, path, region)
    if problems:
        raise DefinitionInvalid(
            f"{path}: {len(problems)} problem(s) the SageMaker service would refuse: "
            + "; ".join(problems) + "; fix them (or compile the definition again)")
    steps = Counter(s.get("Type") for s in all_steps(doc["Steps"]))
    import botocore

    kinds = ", ".join(f"{n} {t}" for t, n in sorted(steps.items()))
    where = (f"instance types in {region}" if region
             else "instance types per job kind only: no config names a region")
    return (f"{path}: SageMaker pipeline definition is valid ({sum(steps.values())} steps: {kinds};"
            f" checked against botocore {botocore.__version__} sagemaker "
            f"{_service_model().api_version}; {where})")
