"""A submitted Kubeflow step's log: its pod's log, through the Kubernetes API.

The run's tasks name their pods (``runs refresh`` keeps each step's pod); the log is read with
the ``kubernetes`` client (which kfp installs) from the cluster ``$KUBECONFIG`` (or
``~/.kube/config``) names, in the run's namespace, container ``main`` (where KFP v2 runs the
component). The API serves a pod's log whole, so a read takes what follows the cursor (a byte
offset) of it.
"""

from __future__ import annotations

import os
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.logs import LogPage, read_bytes
from kubesage.runs.record import RunRecord, StepRecord

CONTAINER = "main"  # the container of a KFP v2 executor pod that runs the component


class PodLogError(KubesageError):
    """The Kubernetes API cannot give a pod's log (no cluster configured, access refused)."""


def core_api() -> Any:
    """``CoreV1Api`` on the cluster of ``$KUBECONFIG`` (else ``~/.kube/config``), else the
    in-cluster service account's."""
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    except Exception:  # no kubeconfig: perhaps running inside the cluster
        try:
            config.load_incluster_config()
        except Exception:
            raise PodLogError("no Kubernetes cluster is configured for pod logs: set KUBECONFIG "
                              "(or ~/.kube/config) to the cluster that runs Kubeflow") from None
    return client.CoreV1Api()


def read_log(api: Any, record: RunRecord, step: StepRecord, cursor: str) -> LogPage:
    """The pod log of ``step`` after ``cursor``."""
    from kubernetes.client.exceptions import ApiException

    pod = step.remote.get("pod", "")
    namespace = record.remote.get("namespace") or "kubeflow"
    if not pod:
        raise PodLogError(f"step {step.name}: no pod is known for it yet ('kubesage runs "
                          "refresh' reads the tasks of a submitted run)")
    try:
        text = api.read_namespaced_pod_log(name=pod, namespace=namespace, container=CONTAINER,
                                           _preload_content=False).data
    except ApiException as e:
        if e.status in (400, 404):  # not started yet, or gone: nothing to show now
            return LogPage("", cursor)
        raise PodLogError(f"reading the log of pod {pod} in {namespace} failed: HTTP {e.status} "
                          f"{e.reason}") from None
    except Exception as e:  # urllib3's connection errors
        raise PodLogError(f"reading the log of pod {pod} in {namespace} failed: "
                          f"{type(e).__name__}: {str(e)[:160]}") from None
    return read_bytes(bytes(text), cursor)
