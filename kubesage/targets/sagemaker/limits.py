"""Service limits of SageMaker Pipelines that neither botocore's model nor the SDK checks.

botocore's model describes each job request (``CreateTrainingJob``, ...), and ``validate``
checks those requests against it; this module checks what lives outside any request:

- step and parameter names: 1 to 64 characters of ``A-Z a-z 0-9 - _``. Source: the SageMaker
  Model Building Pipeline definition JSON schema (``definitions.StepName`` and
  ``definitions.ParameterName``), https://aws-sagemaker-mlops.github.io/sagemaker-model-building-pipeline-definition-JSON-schema/
- managed spot training: ``StoppingCondition.MaxWaitTimeInSeconds`` is required and must be
  at least ``MaxRuntimeInSeconds``. Source: CreateTrainingJob, StoppingCondition,
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html
- a step that wants GPUs (``Resources.gpus`` per process x ``procs_per_node``, carried in the
  job's environment as ``GPUS_ENV``) runs on an instance type with at least that many GPUs; a
  type with none counts. Source: the GPU count of each accelerated instance type,
  https://aws.amazon.com/sagemaker/pricing/ (instance details) and
  https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html
- the instance type takes that job kind, in the config's region (``instances``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kubesage.runtime.sagemaker_training import PROCS_ENV
from kubesage.targets.sagemaker.instances import instance_problem, step_instance

if TYPE_CHECKING:
    from kubesage.dsl.task import Task

#: In a job's environment: the GPUs one node of the step wants (absent: none). Written by the
#: compiler, read by the limit check of a compiled definition.
GPUS_ENV = "KUBESAGE_GPUS_PER_NODE"


def gpu_env(task: Task) -> dict[str, str]:
    """``{GPUS_ENV: N}`` for a task whose nodes want N > 0 GPUs; empty otherwise."""
    want = task.resources.node_gpus(task.distribution.procs_per_node)
    return {GPUS_ENV: str(want)} if want else {}


NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")  # StepName and ParameterName of the schema

# GPUs per accelerated instance type (``ml.`` prefix left out). A type not listed here is not
# checked: no false alarm for a family this table does not know yet.
_GPUS: dict[str, int] = {
    **{f"p2.{s}": n for s, n in (("xlarge", 1), ("8xlarge", 8), ("16xlarge", 16))},
    **{f"p3.{s}": n for s, n in (("2xlarge", 1), ("8xlarge", 4), ("16xlarge", 8))},
    "p3dn.24xlarge": 8, "p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8,
    "p5e.48xlarge": 8, "p5en.48xlarge": 8,
    **{f"g4dn.{s}": 1 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g4dn.12xlarge": 4,
    **{f"{family}.{s}": 1 for family in ("g5", "g6", "g6e")
       for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    **{f"{family}.{s}": n for family in ("g5", "g6", "g6e")
       for s, n in (("12xlarge", 4), ("24xlarge", 4), ("48xlarge", 8))},
}


def gpus_of(instance_type: str) -> int | None:
    """The GPUs of an ``ml.`` instance type: 0 for the general-purpose, compute- and
    memory-optimized families, ``None`` where this table does not know the type."""
    name = instance_type.removeprefix("ml.")
    if name in _GPUS:
        return _GPUS[name]
    family = name.split(".", 1)[0]
    if family[:1] in ("m", "c", "r", "t") and not family.startswith("trn"):
        return 0
    return None


def all_steps(steps: list[Any]) -> Iterator[dict[str, Any]]:
    """Every step of a definition's ``Steps``, those inside conditions' branches included."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            args = step.get("Arguments", {})
            yield from all_steps(args.get("IfSteps", []) + args.get("ElseSteps", []))


def definition_limit_problems(doc: dict[str, Any], region: str | None = None) -> list[str]:
    """``limit_problems`` of a whole definition (the steps inside conditions included)."""
    return limit_problems(doc.get("Parameters", []), list(all_steps(doc.get("Steps", []))),
                          region)


def limit_problems(parameters: list[Any], steps: list[dict[str, Any]],
                   region: str | None = None) -> list[str]:
    """Every service limit a definition breaks, one message each (empty when none); instance
    types are checked per job kind, and against ``region`` when given."""
    problems = []
    defaults = {p.get("Name"): p.get("DefaultValue") for p in parameters if isinstance(p, dict)}
    for p in parameters:
        name = p.get("Name", "") if isinstance(p, dict) else ""
        if not NAME.match(str(name)):
            problems.append(f"parameter {name!r}: a name is 1 to 64 characters of letters, "
                            "digits, '-' and '_'; rename it")
    for step in steps:
        name = step.get("Name", "")
        where = f"step '{name}'"
        if not NAME.match(str(name)):
            problems.append(f"{where}: a step name is 1 to 64 characters of letters, digits, "
                            "'-' and '_'; rename the task (set_name) or shorten it")
        if step.get("Type") == "Training":
            problems += _training(where, step.get("Arguments", {}))
        job = step_instance(step)
        if job is not None:
            kind, field, instance = job
            if isinstance(instance, dict) and str(instance.get("Get")).startswith("Parameters."):
                instance = defaults.get(instance["Get"].split(".", 1)[1])  # checked by its default
            if not isinstance(instance, str):
                continue
            problem = instance_problem(kind, instance, region)
            if problem:
                problems.append(f"{where} (Create{kind}Job): {field}: {problem}")
            elif kind != "Transform":
                problems += _gpus(where, instance, step.get("Arguments", {}))
    return problems


def _gpus(where: str, instance: str, args: dict[str, Any]) -> list[str]:
    """A step that wants GPUs on an instance type with fewer (none included)."""
    env = args.get("Environment", {})
    wanted, procs = env.get(GPUS_ENV, "0"), env.get(PROCS_ENV, "1")
    if not (isinstance(wanted, str) and wanted.isdigit() and int(wanted) > 0):
        return []
    want, have = int(wanted), gpus_of(instance)
    if have is None or have >= want:
        return []
    procs_n = int(procs) if isinstance(procs, str) and procs.isdigit() else 1
    per = max(1, want // procs_n)
    bigger = sorted((n, t) for t, n in _GPUS.items() if n >= want)
    hint = f" (e.g. ml.{bigger[0][1]})" if bigger else ""
    fewer = f", or lower procs_per_node to {have // per}" if procs_n > 1 and have >= per else ""
    return [f"{where}: wants {want} GPU(s) per node ({procs_n} process(es) x {per} GPU), but "
            f"{instance} has {have}; set an instance type with at least {want} GPUs{hint} for "
            "it in the SageMaker config (components.<component>.instance_type or "
            f"instance_types.<kind>){fewer}"]


def _training(where: str, args: dict[str, Any]) -> list[str]:
    problems = []
    stop = args.get("StoppingCondition", {})
    run, wait = stop.get("MaxRuntimeInSeconds"), stop.get("MaxWaitTimeInSeconds")
    if args.get("EnableManagedSpotTraining") is True:
        if wait is None:
            problems.append(f"{where}: managed spot training needs "
                            "StoppingCondition.MaxWaitTimeInSeconds; set spot.max_wait_s")
        elif isinstance(run, int) and isinstance(wait, int) and wait < run:
            problems.append(f"{where}: MaxWaitTimeInSeconds ({wait}) is less than "
                            f"MaxRuntimeInSeconds ({run}); spot training waits at least as long "
                            "as it runs: raise spot.max_wait_s")
    return problems
