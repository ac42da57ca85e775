"""``kubesage validate FILE.yaml``: strict checks of a compiled Kubeflow pipeline, offline.

kfp's own loader only catches syntax and unknown top-level fields. Here every YAML document is
parsed strictly into the kfp protos (``PipelineSpec`` and its ``PipelineDeploymentConfig``, the
``PlatformSpec`` and each ``KubernetesExecutorConfig``), so a misspelt field anywhere is an error;
then every component, executor, task and input reference is resolved.
"""

from __future__ import annotations

import os
import re
from typing import Any

from kubesage.config.reader import yaml_problem
from kubesage.dsl.errors import KubesageError

FIX = "recompile it with 'kubesage compile PIPELINE --target kfp -o FILE'"


#: The prefix of the inputs kfp's compiler adds for pipeline channels (``compiler_utils.
#: additional_input_name_for_pipeline_channel``); a component never declares them.
CHANNEL = "pipelinechannel--"
#: The fields of ``kfp.dsl.structures.ResourceSpec``, and ``base_image``: kfp's compiler passes
#: one of them to the task as an input of that name when it is set from a pipeline channel.
MACHINE_FIELDS = frozenset({"cpu_request", "cpu_limit", "memory_request", "memory_limit",
                            "accelerator_type", "accelerator_count", "base_image"})
_PLACEHOLDER = re.compile(r"""\{\{\$\.inputs\.parameters\[['"]([^'"\]]+)['"]\]\}\}""")


class KfpValidationError(KubesageError):
    """A compiled Kubeflow pipeline file is malformed or has a dangling reference."""


def _load_documents(path: str) -> list[Any]:
    import yaml

    if not os.path.isfile(path):
        raise KfpValidationError(f"{path} does not exist; compile one with 'kubesage compile "
                                 "PIPELINE --target kfp -o FILE'")
    with open(path) as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            raise KfpValidationError(f"{path}: not valid YAML ({yaml_problem(e)}); {FIX}") from None
    if not docs:
        raise KfpValidationError(f"{path}: the file is empty; {FIX}")
    if len(docs) > 2:
        raise KfpValidationError(f"{path}: {len(docs)} YAML documents; a compiled pipeline has a "
                                 f"PipelineSpec and at most one PlatformSpec; {FIX}")
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise KfpValidationError(f"{path}: document {i} is a {type(doc).__name__}, not a "
                                     f"mapping; {FIX}")
    return docs


def _parse(path: str, what: str, doc: Any, message: Any) -> Any:
    from google.protobuf import json_format

    try:
        json_format.ParseDict(doc, message)
    except json_format.ParseError as e:
        detail = " ".join(str(e).split())
        raise KfpValidationError(f"{path}: {what} is not a valid {type(message).__name__}: {detail}; "
                                 f"{FIX}") from None
    return message


def validate_file(path: str) -> str:
    """Validate ``path``; returns a one-line summary or raises ``KfpValidationError``."""
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2 as pb2

    docs = _load_documents(path)
    spec = _parse(path, "document 1 (the pipeline)", docs[0], pb2.PipelineSpec())
    deployment = _parse(path, "deploymentSpec", docs[0].get("deploymentSpec", {}),
                        pb2.PipelineDeploymentConfig())
    if not spec.pipeline_info.name:
        raise KfpValidationError(f"{path}: pipelineInfo.name is missing; {FIX}")
    if not spec.root.HasField("dag"):
        raise KfpValidationError(f"{path}: root has no dag; {FIX}")
    executors = set(deployment.executors)
    components = dict(spec.components)
    for name, comp in components.items():
        kind = comp.WhichOneof("implementation")
        if kind == "executor_label" and comp.executor_label not in executors:
            raise KfpValidationError(
                f"{path}: component '{name}' runs executor '{comp.executor_label}', which "
                f"deploymentSpec.executors does not define (it has: {', '.join(sorted(executors))}); "
                f"{FIX}")
        if kind is None:
            raise KfpValidationError(f"{path}: component '{name}' has neither a dag nor an "
                                     f"executorLabel; {FIX}")
    n_tasks = _check_dag(path, "root", spec.root, components)
    for name, comp in components.items():
        if comp.HasField("dag"):
            n_tasks += _check_dag(path, name, comp, components)
    k8s_count = 0
    if len(docs) == 2:
        platform = _parse(path, "document 2 (the platform config)", docs[1], pb2.PlatformSpec())
        for pname, single in platform.platforms.items():
            if pname != "kubernetes":
                raise KfpValidationError(f"{path}: platform '{pname}' is unknown; only "
                                         f"'kubernetes' is defined for Kubeflow; {FIX}")
            raw = docs[1]["platforms"]["kubernetes"].get("deploymentSpec", {}).get("executors", {})
            for label, config in raw.items():
                if label not in executors:
                    raise KfpValidationError(
                        f"{path}: the Kubernetes config names executor '{label}', which "
                        f"deploymentSpec.executors does not define; {FIX}")
                k8s = _parse(path, f"the Kubernetes config of executor '{label}'", config,
                             k8s_pb2.KubernetesExecutorConfig())
                problem = metadata_problem(k8s)
                if problem:
                    raise KfpValidationError(
                        f"{path}: the Kubernetes config of executor '{label}': {problem}, which "
                        f"the Kubernetes API refuses; correct it in the target config or the "
                        f"pipeline and {FIX}")
                k8s_count += 1
            del single
    _load_with_kfp(path)
    return (f"{path}: Kubeflow pipeline '{spec.pipeline_info.name}' is valid ({n_tasks} tasks, "
            f"{len(components)} components, {len(executors)} executors, Kubernetes config for "
            f"{k8s_count} executors)")


def metadata_problem(k8s: Any) -> str | None:
    """The first label, annotation, taint or claim name of a ``KubernetesExecutorConfig`` that
    breaks Kubernetes' syntax (``k8s_syntax``); None when all are valid."""
    from kubesage.targets.kfp.k8s_syntax import (
        annotations_problem,
        dns_subdomain_problem,
        label_key_problem,
        label_value_problem,
        labels_problem,
    )

    problem = labels_problem(k8s.node_selector.labels)
    if problem:
        return f"nodeSelector {problem}"
    problem = labels_problem(k8s.pod_metadata.labels)
    if problem:
        return f"podMetadata {problem}"
    problem = annotations_problem(k8s.pod_metadata.annotations)
    if problem:
        return f"podMetadata {problem}"
    for i, t in enumerate(k8s.tolerations):
        bad_value = label_value_problem(t.value)
        problem = (label_key_problem(t.key) if t.key else None) or (
            bad_value and f"value '{t.value}' {bad_value}")
        if problem:
            return f"tolerations[{i}] (key '{t.key}'): {problem}"
    for i, mount in enumerate(k8s.pvc_mount):
        problem = dns_subdomain_problem(mount.constant) if mount.constant else None
        if problem:
            return f"pvcMount[{i}]: claim '{mount.constant}' {problem}"
    return None


def _check_dag(path: str, owner: str, comp: Any, components: dict[str, Any]) -> int:
    """Resolve every reference of the tasks of one DAG; returns how many tasks it has."""
    tasks = dict(comp.dag.tasks)
    inputs = comp.input_definitions
    for tname, task in tasks.items():
        if task.component_ref.name not in components:
            raise KfpValidationError(f"{path}: task '{tname}' of {owner} runs component "
                                     f"'{task.component_ref.name}', which is not defined under "
                                     f"components; {FIX}")
    for tname, task in tasks.items():
        where = f"{path}: task '{tname}' of {owner}"
        ref = task.component_ref.name
        target = components[ref]
        for dep in task.dependent_tasks:
            if dep not in tasks:
                raise KfpValidationError(f"{where} depends on task '{dep}', which {owner} does not "
                                         f"have; {FIX}")
        for key, value in task.inputs.parameters.items():
            if key not in target.input_definitions.parameters and \
                    not _compiler_injected(key, value, task.inputs.parameters):
                raise KfpValidationError(f"{where} passes parameter '{key}', which component "
                                         f"'{ref}' does not declare; {FIX}")
            kind = value.WhichOneof("kind")
            if kind == "component_input_parameter" and \
                    value.component_input_parameter not in inputs.parameters:
                read = value.component_input_parameter
                raise KfpValidationError(f"{where} reads input parameter '{read}', which {owner} "
                                         f"does not declare; {_missing_input_fix(read)}")
            if kind == "task_output_parameter":
                _check_producer(where, owner, tasks, components, value.task_output_parameter.producer_task,
                                value.task_output_parameter.output_parameter_key, "parameters")
        for key, value in task.inputs.artifacts.items():
            if key not in target.input_definitions.artifacts and not key.startswith(CHANNEL):
                raise KfpValidationError(f"{where} passes artifact '{key}', which component "
                                         f"'{ref}' does not declare; {FIX}")
            kind = value.WhichOneof("kind")
            if kind == "component_input_artifact" and \
                    value.component_input_artifact not in inputs.artifacts:
                raise KfpValidationError(
                    f"{where} reads input artifact '{value.component_input_artifact}', which "
                    f"{owner} does not declare; {FIX}")
            if kind == "task_output_artifact":
                _check_producer(where, owner, tasks, components, value.task_output_artifact.producer_task,
                                value.task_output_artifact.output_artifact_key, "artifacts")
    return len(tasks)


def _missing_input_fix(name: str) -> str:
    """The fix of a task that reads an input its group lacks. kfp's compiler emits such files
    itself for a loop item (or a field of a dict item) used across a nested group: in a dsl.If,
    or in a format string in an inner loop; the run fails when it reaches the task."""
    if "loop-item" in name:
        return ("kfp's compiler misroutes loop items and their fields used in nested groups "
                "(kubeflow/pipelines#13273); pass the item to a task first and use that task's "
                "output there")
    return FIX


def _compiler_injected(key: str, value: Any, passed: Any) -> bool:
    """Whether ``key`` is an input kfp's compiler adds to a task beyond what its component declares.

    Two kinds: ``pipelinechannel--NAME``, the value of a pipeline channel that a format string
    (``f"{param}-x"``), a condition or a loop of the task reads; and a machine field set from a
    channel (``set_cpu_limit(param)``, ``set_accelerator_type(task.output)``,
    ``set_container_image``), a constant whose placeholders read such ``pipelinechannel--``
    inputs of the same task. A machine field with a plain value or a placeholder that reads an
    input the task does not pass is still an undeclared input.
    """
    if key.startswith(CHANNEL):
        return True
    if key not in MACHINE_FIELDS or value.WhichOneof("kind") != "runtime_value":
        return False
    constant = value.runtime_value.constant
    if constant.WhichOneof("kind") != "string_value":
        return False
    read = _PLACEHOLDER.findall(constant.string_value)
    return bool(read) and all(name.startswith(CHANNEL) and name in passed for name in read)


def _check_producer(where: str, owner: str, tasks: dict[str, Any], components: dict[str, Any],
                    producer: str, key: str, kind: str) -> None:
    if producer not in tasks:
        raise KfpValidationError(f"{where} takes '{key}' from task '{producer}', which {owner} "
                                 f"does not have; {FIX}")
    declared = getattr(components[tasks[producer].component_ref.name].output_definitions, kind)
    if key not in declared:
        raise KfpValidationError(f"{where} takes output '{key}' of task '{producer}', whose "
                                 f"component does not declare it; {FIX}")


def _load_with_kfp(path: str) -> None:
    from kfp import components

    try:
        components.load_component_from_file(path)
    except Exception as e:  # what kfp's loader raises varies by problem
        raise KfpValidationError(f"{path}: kfp cannot load it: {e}; {FIX}") from None
