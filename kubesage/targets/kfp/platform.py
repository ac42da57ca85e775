"""Per-task Kubernetes settings (kfp-kubernetes): resources, volumes, scheduling, env, retries.

Everything here comes from the task (what it needs) and the target config (where it runs);
the portable part of the compiled pipeline never sees a claim name or a toleration.
"""

from __future__ import annotations

from typing import Any

from kfp import kubernetes

from kubesage.dsl.task import Task
from kubesage.targets.kfp.components import is_distributed
from kubesage.targets.kfp.config import KfpConfig, MountConfigError
from kubesage.targets.kfp.trainjob import GPU_RESOURCE, SHM_VOLUME, cpu_quantity

# A launcher pod only copies files and polls the API; the TrainJob nodes get the real resources.
LAUNCHER_CPU, LAUNCHER_MEMORY = "500m", "1Gi"


def apply(kfp_task: Any, task: Task, config: KfpConfig) -> None:
    """Configure one compiled task: caching, retries, resources, a non-root user, volumes,
    scheduling, env. Data claims are mounted as they are bound: kfp-kubernetes has no read-only
    PVC mount, so the claim's own access mode (ReadOnlyMany) keeps data read-only on Kubeflow."""
    kfp_task.set_caching_options(task.cache)
    if task.retries:
        kfp_task.set_retry(task.retries, backoff_duration=config.retry_backoff,
                           backoff_factor=config.retry_factor, backoff_max_duration=config.retry_max)
    _resources(kfp_task, task)
    kubernetes.set_security_context(kfp_task, run_as_user=config.run_as_user,
                                    run_as_group=config.run_as_group, run_as_non_root=True)
    for name, path in task.spec.mounts:
        claim = config.claim(name, f"component '{task.spec.name}' (task '{task.name}')", path)
        kubernetes.mount_pvc(kfp_task, pvc_name=claim, mount_path=path)
    if config.checkpoint_claim:
        kubernetes.mount_pvc(kfp_task, pvc_name=config.checkpoint_claim,
                             mount_path=config.checkpoint_path)
    elif is_distributed(task.distribution):
        raise MountConfigError(
            f"task '{task.name}' trains on {task.distribution.nodes} nodes, which exchange "
            f"inputs and outputs through the checkpoint volume, but {config.source} has no "
            "'checkpoints.claim'; add 'checkpoints: {claim: <ReadWriteMany claim>, path: /checkpoints}'")
    if config.shm_size:
        kubernetes.empty_dir_mount(kfp_task, volume_name=SHM_VOLUME, mount_path="/dev/shm",
                                   medium="Memory", size_limit=config.shm_size)
    for key, value in sorted(config.node_selector.items()):
        kubernetes.add_node_selector(kfp_task, label_key=key, label_value=value)
    for t in config.tolerations:
        kubernetes.add_toleration(kfp_task, key=t.key, operator=t.operator, value=t.value,
                                  effect=t.effect)
    for key, value in sorted(config.env.items()):
        kfp_task.set_env_variable(key, value)
    for name, _ in task.spec.mounts:  # local runs: kfp.local's cache key sees the data's version
        if name in config.data_versions:
            kfp_task.set_env_variable(f"KUBESAGE_DATA_{name.upper()}", config.data_versions[name])


def _resources(kfp_task: Any, task: Task) -> None:
    if is_distributed(task.distribution):
        kfp_task.set_cpu_request(LAUNCHER_CPU).set_cpu_limit(LAUNCHER_CPU)
        kfp_task.set_memory_request(LAUNCHER_MEMORY).set_memory_limit(LAUNCHER_MEMORY)
        return
    res = task.resources
    if res.cpu:
        kfp_task.set_cpu_request(cpu_quantity(res.cpu)).set_cpu_limit(cpu_quantity(res.cpu))
    if res.memory:
        kfp_task.set_memory_request(res.memory).set_memory_limit(res.memory)
    gpus = res.node_gpus(task.distribution.procs_per_node)
    if gpus:
        kfp_task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
