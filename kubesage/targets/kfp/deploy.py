"""``kubesage deploy --target kfp``: a KServe ``InferenceService`` per model, in the serving image.

Each model (one per client) gets an InferenceService (``serving.kserve.io/v1beta1``) whose
predictor is the project's ``kubesage/serve`` image (named by the code it holds, in the config's
registry) as a custom container: KServe's storage initializer downloads the model from its URI
(``STORAGE_URI``: ``s3://``, ``gs://``, ``pvc://claim/path``...) to ``/mnt/models``, and the
server answers the Open Inference Protocol v2 on port 8080. Namespace, service account (which
holds the storage credentials) and the non-root user come from ``config/kfp.yaml``.

The manifest is checked against the InferenceService CRD's own schema before it is written:
``schemas/inferenceservice-v1beta1.json.gz`` is the ``openAPIV3Schema`` of
``config/crd/full/serving.kserve.io_inferenceservices.yaml`` in kserve/kserve (commit aaac4e294,
after v0.20.0-rc0; Apache License 2.0), with unknown fields refused as ``kubectl apply``'s strict
field validation refuses them. ``--apply`` hands it to ``kubectl apply``.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import subprocess
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.targets.kfp.config import KfpConfig
from kubesage.targets.kfp.k8s_syntax import dns_label_problem, labels_problem

SERVE_IMAGE = "kubesage/serve"
SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas",
                      "inferenceservice-v1beta1.json.gz")
URI_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hf://", "oci://")


class DeployError(KubesageError):
    """A manifest cannot be made, breaks the CRD's schema, or the cluster refused it."""


def inference_service(name: str, client: str, uri: str, config: KfpConfig,
                      image: str) -> dict[str, Any]:
    """The InferenceService serving the model at ``uri`` under the name ``client``."""
    if not uri.startswith(URI_SCHEMES):
        raise DeployError(f"model '{client}': {uri} is not a URI the cluster can read; give the "
                          f"model's location there ({', '.join(s + '...' for s in URI_SCHEMES[:3])})"
                          "; a folder on this machine deploys with --target sagemaker or "
                          "'kubesage serve'")
    problem = dns_label_problem(name)
    if problem:
        raise DeployError(f"InferenceService name '{name}': {problem}")
    security: dict[str, Any] = {"runAsNonRoot": True}
    if config.run_as_user is not None:
        security["runAsUser"] = config.run_as_user
    if config.run_as_group is not None:
        security["runAsGroup"] = config.run_as_group
    predictor: dict[str, Any] = {
        "securityContext": security,
        "containers": [{
            "name": "kserve-container",  # the container KServe's storage initializer serves
            "image": image,
            "args": [f"--model={client}=/mnt/models", "--port=8080"],
            "env": [{"name": "STORAGE_URI", "value": uri}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                          "limits": {"cpu": "2", "memory": "4Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
        }],
    }
    if config.service_account:
        predictor["serviceAccountName"] = config.service_account
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": config.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "kubesage",
                                    "kubesage.io/model": client}},
            "spec": {"predictor": predictor}}


@functools.cache
def _schema() -> dict[str, Any]:
    with gzip.open(SCHEMA, "rt") as f:
        schema: dict[str, Any] = json.load(f)
    return _strict(schema)


def _strict(node: Any) -> Any:
    """The schema refusing fields it does not name (as strict field validation does), except
    where Kubernetes keeps unknown fields (``x-kubernetes-preserve-unknown-fields``)."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def schema_problems(doc: dict[str, Any]) -> list[str]:
    """Where ``doc`` breaks the InferenceService CRD's schema (and Kubernetes' label syntax)."""
    import jsonschema

    validator = jsonschema.Draft7Validator(_schema())
    problems = [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
                for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]
    labels = doc.get("metadata", {}).get("labels", {})
    label_problem = labels_problem(labels) if isinstance(labels, dict) else None
    return problems + ([f"metadata.labels: {label_problem}"] if label_problem else [])


def deploy(models: dict[str, str], name: str, config: KfpConfig, image: str,
           output: str | None, apply: bool, per_client: bool = False) -> dict[str, Any]:
    """Write (and with ``apply``, apply) one InferenceService per model, ``<name>-<client>``
    for several or ``per_client`` (so one client redeploys alone), else ``<name>``; what was
    made."""
    import yaml

    from kubesage.util.atomic import write_atomic

    many = per_client or len(models) > 1
    docs = [inference_service(f"{name}-{client}" if many else name, client, uri, config, image)
            for client, uri in sorted(models.items())]
    for doc in docs:
        problems = schema_problems(doc)
        if problems:
            raise DeployError(f"InferenceService {doc['metadata']['name']} breaks the KServe CRD "
                              "schema: " + "; ".join(problems[:5]))
    path = output or f"{name}-inferenceservice.yaml"
    write_atomic(path, yaml.safe_dump_all(docs, sort_keys=False))
    result: dict[str, Any] = {"target": "kfp", "manifest": path, "image": image,
                              "namespace": config.namespace,
                              "inference_services": [d["metadata"]["name"] for d in docs]}
    if apply:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise DeployError(f"--apply needs kubectl on PATH, configured for the cluster; the "
                              f"manifest is written: {path} (kubectl apply -f {path})")
        proc = subprocess.run([kubectl, "apply", "--server-side", "-f", path],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise DeployError(f"kubectl apply -f {path} failed: "
                              f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        result["applied"] = proc.stdout.strip().splitlines()
    return result
