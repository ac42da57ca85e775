"""Which instance types a job kind takes, and in which region: checked before anything is sent.

Two sources, both read offline:

- the global set per job kind is botocore's SageMaker service model, the enums
  ``TrainingInstanceType``, ``ProcessingInstanceType`` and ``TransformInstanceType`` (the
  ``InstanceType`` of ``ResourceConfig``, ``ProcessingClusterConfig`` and
  ``TransformResources``); https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
- availability per region: neither botocore nor the SageMaker SDK ships it (sagemaker-core's
  ``instance_gpu_info.json`` lists the same GPU types under every region; it is not an offer
  list). ``REGIONAL`` below is a cited snapshot of the families the service documents as
  offered in some regions only; a family it does not name is taken to be offered wherever
  SageMaker is, and a region botocore does not know (newer than the installed botocore) gets
  the global check only. Never a false alarm for a type the service documents everywhere.
"""

from __future__ import annotations

import difflib
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.config import SageMakerConfig

#: job kind -> (botocore enum shape, where the definition's request holds the instance type)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Training": ("TrainingInstanceType", ("ResourceConfig", "InstanceType")),
    "Processing": ("ProcessingInstanceType", ("ProcessingResources", "ClusterConfig",
                                              "InstanceType")),
    "Transform": ("TransformInstanceType", ("TransformResources", "InstanceType")),
    "Serving": ("ProductionVariantInstanceType", ("InstanceType",)),  # an endpoint's variant
}

#: Snapshot of 2022-12-09 (the SageMaker API Reference, ``ResourceConfig.InstanceType``, as
#: carried by botocore's model of that date): "ml.p4de.24xlarge instances are available in the
#: following Amazon Web Services Regions: US East (N. Virginia) (us-east-1), US West (Oregon)
#: (us-west-2)"; https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
#: and https://aws.amazon.com/sagemaker/pricing/ (instance types per region). Job kind ->
#: family -> the regions that offer it; refresh it from those pages when they change.
REGIONAL: dict[str, dict[str, frozenset[str]]] = {
    "Training": {"p4de": frozenset({"us-east-1", "us-west-2"})},
}


@functools.cache
def offered(kind: str) -> frozenset[str]:
    """Every instance type botocore's model allows for a job kind (``Training``, ...)."""
    from kubesage.targets.sagemaker.validate import _service_model

    return frozenset(_service_model().shape_for(KINDS[kind][0]).enum)


@functools.cache
def sagemaker_regions() -> frozenset[str]:
    """The regions botocore's endpoint data gives SageMaker, in every partition."""
    from kubesage.targets.sagemaker.session import botocore_session

    session = botocore_session()
    return frozenset(r for partition in session.get_available_partitions()
                     for r in session.get_available_regions("sagemaker", partition))


def in_region(kind: str, instance_type: str, region: str) -> bool:
    """Whether ``REGIONAL`` allows ``instance_type`` for ``kind`` in ``region`` (True for every
    family it does not name, and for a region botocore does not know)."""
    regions = REGIONAL.get(kind, {}).get(family(instance_type))
    return regions is None or region not in sagemaker_regions() or region in regions


def family(instance_type: str) -> str:
    """``ml.g5.2xlarge`` -> ``g5``."""
    return instance_type.removeprefix("ml.").split(".", 1)[0]


def instance_problem(kind: str, instance_type: str, region: str | None) -> str | None:
    """Why ``instance_type`` cannot run a ``kind`` job (in ``region``, when given), naming close
    alternatives; None when it can."""
    from kubesage.targets.sagemaker.limits import gpus_of

    shape, _ = KINDS[kind]
    allowed = offered(kind)
    gpus = gpus_of(instance_type)
    if instance_type not in allowed:
        same = sorted(t for t in allowed if family(t) == family(instance_type))
        alike = sorted(t for t in allowed if gpus and gpus_of(t) == gpus)
        close = (same or alike)[:6] or difflib.get_close_matches(instance_type, sorted(allowed),
                                                                 6, 0.6)
        hint = f"; close: {', '.join(close)}" if close else ""
        return (f"'{instance_type}' is not a valid {shape} ({len(allowed)} types take "
                f"{kind.lower()} jobs{hint})")
    if region is None or in_region(kind, instance_type, region):
        return None
    here = sorted(t for t in allowed if in_region(kind, t, region) and t != instance_type
                  and (gpus_of(t) == gpus if gpus else family(t) == family(instance_type)))
    hint = f"; use one offered there, e.g. {', '.join(here[:4])}" if here else ""
    where = sorted(REGIONAL[kind][family(instance_type)])
    return (f"'{instance_type}' is not offered for {kind.lower()} jobs in {region} (only in "
            f"{', '.join(where)}){hint}, or another region")


def step_instance(step: dict[str, Any]) -> tuple[str, str, Any] | None:
    """(job kind, the field's path, its value) of a job step; None for other steps."""
    kind = step.get("Type")
    if kind not in KINDS:
        return None
    value: Any = step.get("Arguments", {})
    for key in KINDS[kind][1]:
        value = value.get(key) if isinstance(value, dict) else None
    return str(kind), ".".join(KINDS[kind][1]), value


def check_config(config: SageMakerConfig) -> None:
    """Refuse an instance type of the target config that its job kind does not take in the
    config's region, naming the file and the key (before anything is compiled)."""
    from kubesage.targets.sagemaker.config import SageMakerConfigError

    keys = [("instance_types.processing", "Processing", config.processing_instance_type),
            ("instance_types.training", "Training", config.training_instance_type)]
    if config.transform_instance_type:
        keys.append(("instance_types.transform", "Transform", config.transform_instance_type))
    keys += [(f"components.{name}.instance_type", hints.kind.capitalize(), hints.instance_type)
             for name, hints in sorted(config.components.items())
             if hints.instance_type and hints.kind in ("processing", "training", "transform")]
    for key, kind, instance_type in keys:
        problem = instance_problem(kind, instance_type, config.region)
        if problem:
            regional = instance_problem(kind, instance_type, None) is None
            fix = "change it there, or 'region'" if regional else "change it there"
            raise SageMakerConfigError(f"{config.source}: '{key}': {problem}; {fix}")
