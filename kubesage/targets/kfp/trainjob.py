"""Multi-node training on Kubeflow: the TrainJob a launcher step creates (Kubeflow Trainer v2).

A component declared with ``Distribution(nodes > 1)`` compiles to a small launcher step. At run
time the launcher (``python -m kubesage.runtime kfp trainjob``, see ``kubesage/runtime/kfp.py``)
copies its input artifacts to the shared checkpoint volume, creates the TrainJob built from the
template below, waits for it, copies the outputs back and fails the step if the TrainJob fails.

The template is fixed at compile time (image, node count, resources, volumes, tolerations, env);
the launcher fills in only the name and the task file. Pinned API: Trainer v2.2
(``trainer.kubeflow.org/v1alpha1``, ``runtimePatches``, ``numProcPerNode`` on the trainer).
"""

from __future__ import annotations

from typing import Any

from kubesage.dsl.errors import DefinitionError
from kubesage.dsl.interface import ComponentSpec, Distribution, Resources
from kubesage.runtime import COMMAND
from kubesage.targets.kfp.config import KfpConfig
from kubesage.targets.kfp.k8s_syntax import labels_problem

TRAINER_API_VERSION = "trainer.kubeflow.org/v1alpha1"
TRAINER_RELEASE = "v2.2.0"
# The torch-distributed runtime's replicated job and trainer container are both named "node".
TRAINER_NODE = "node"
PATCH_MANAGER = "kubesage.io/kfp-launcher"
# The local contract starts torchrun itself from the runtime's PET_* variables (rank 0 reports).
TRAINER_COMMAND = [*COMMAND, "local"]
SHM_VOLUME = "dshm"
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
CHECKPOINT_VOLUME = "checkpoints"


def k8s_resources(resources: Resources, procs_per_node: int = 1) -> dict[str, dict[str, str]]:
    """Kubernetes requests and limits for one process group (a pod, or one training node) of
    ``procs_per_node`` processes (GPUs are wanted per process)."""
    limits: dict[str, str] = {}
    if resources.cpu:
        limits["cpu"] = cpu_quantity(resources.cpu)
    if resources.memory:
        limits["memory"] = resources.memory
    requests = dict(limits)
    if resources.gpus:
        limits[GPU_RESOURCE] = str(resources.node_gpus(procs_per_node))
    out: dict[str, dict[str, str]] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def cpu_quantity(cpu: float) -> str:
    """``2`` -> ``"2"``, ``0.5`` -> ``"500m"``."""
    return str(int(cpu)) if float(cpu).is_integer() else f"{int(round(cpu * 1000))}m"


def volume_name(mount: str) -> str:
    return f"data-{mount}"


def trainjob_template(spec: ComponentSpec, resources: Resources, distribution: Distribution,
                      config: KfpConfig) -> dict[str, Any]:
    """The TrainJob a launcher creates for ``spec``; ``metadata.name`` and the task file are
    added at run time."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for mount, path in spec.mounts:
        volumes.append({"name": volume_name(mount),
                        "persistentVolumeClaim": {
                            "claimName": config.claim(mount, f"component '{spec.name}'", path)}})
        mounts.append({"name": volume_name(mount), "mountPath": path, "readOnly": True})
    volumes.append({"name": CHECKPOINT_VOLUME,
                    "persistentVolumeClaim": {"claimName": config.checkpoint_claim}})
    mounts.append({"name": CHECKPOINT_VOLUME, "mountPath": config.checkpoint_path})
    if config.shm_size:
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory",
                                                         "sizeLimit": config.shm_size}})
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    user = {"runAsNonRoot": True, "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_group}
    pod_spec: dict[str, Any] = {
        "volumes": volumes,
        "securityContext": {k: v for k, v in user.items() if v is not None},
        "containers": [{"name": TRAINER_NODE, "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}}}]}
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account
    if config.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(config.node_selector.items()))
    if config.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in config.tolerations]
    env = [{"name": k, "value": v} for k, v in sorted(config.env.items())]
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    trainer: dict[str, Any] = {
        "image": config.image(spec.image),
        "command": list(TRAINER_COMMAND),
        "args": [],
        "env": env,
        "numNodes": distribution.nodes,
        "numProcPerNode": distribution.procs_per_node,
    }
    res = k8s_resources(resources, distribution.procs_per_node)
    if res:
        trainer["resourcesPerNode"] = res
    labels = {"app.kubernetes.io/managed-by": "kubesage", "kubesage.io/component": spec.name}
    problem = labels_problem(labels)
    if problem:  # the API server would refuse the TrainJob when the launcher creates it
        raise DefinitionError(f"component '{spec.name}' trains on {distribution.nodes} nodes "
                              f"through a TrainJob labelled with its name: {problem}; give it a "
                              "shorter name (@component(name='...'))")
    return {
        "apiVersion": TRAINER_API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": "", "namespace": config.namespace, "labels": labels},
        "spec": {
            "runtimeRef": {"name": config.trainer_runtime, "apiGroup": "trainer.kubeflow.org",
                           "kind": "ClusterTrainingRuntime"},
            "trainer": trainer,
            "runtimePatches": [{
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
                    "name": TRAINER_NODE,
                    "template": {"spec": {"template": {"spec": pod_spec}}},
                }]}}},
            }],
        },
    }
