"""register: record a model that passed the bar, with its metrics and lineage.

The model and a model card go to the ``registered`` artifact; when the target provides an MLflow
tracking URI (``MLFLOW_TRACKING_URI``: locally a SQLite store in the run store, in the cloud a
SageMaker managed MLflow server or one beside Kubeflow), a new version of ``model_name`` is
created in its model registry, tagged with the kubesage run and the model's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

from kubesage import Input, Model, Output, component


@component(version="1.2.0", preload=["mlflow"])
def register(
    model: Input[Model],
    registered: Output[Model],
    model_name: str,
    accuracy: float,
    variant: str = "",
) -> str:
    """Register the model as ``model_name`` (``<model_name>-<variant>`` with a variant, e.g.
    one per client); returns ``<name>/<version>`` (the MLflow version) or ``<name>``."""
    from kubesage.runtime.context import RUN_ID_ENV, STEP_ENV, mlflow_store_lock

    model_name = f"{model_name}-{variant}" if variant else model_name

    shutil.copytree(model.path, registered.path, dirs_exist_ok=True)
    with open(registered.file("model.pt"), "rb") as f:
        weights_sha256 = hashlib.sha256(f.read()).hexdigest()
    card: dict[str, Any] = {
        "name": model_name,
        "metrics": {"accuracy": accuracy},
        "lineage": {"run_id": os.environ.get(RUN_ID_ENV, ""), "step": os.environ.get(STEP_ENV, ""),
                    "source": model.path, "model_sha256": weights_sha256,
                    "source_metadata": model.metadata},
    }
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    ref = model_name
    if uri:
        with mlflow_store_lock(uri):
            version = _mlflow_version(uri, model_name, registered.path, card)
        card["mlflow"] = {"tracking_uri": uri, "version": version}
        ref = f"{model_name}/{version}"
    with open(registered.file("model_card.json"), "w") as f:
        json.dump(card, f, indent=2)
    registered.metadata.update(name=model_name, accuracy=accuracy, ref=ref)
    print(f"register: {ref} registered with accuracy {accuracy:.4f}", flush=True)
    return ref


def _mlflow_version(uri: str, name: str, folder: str, card: dict[str, Any]) -> str:
    """Log the model folder to an MLflow run and create a registered model version from it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from kubesage.runtime.context import MLFLOW_ARTIFACTS_ENV

    client = MlflowClient(uri)
    experiment = "kubesage-registry"
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            exp_id = client.create_experiment(experiment,
                                              artifact_location=os.environ.get(MLFLOW_ARTIFACTS_ENV))
        except MlflowException:  # created meanwhile by a parallel register step
            exp_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        exp_id = found.experiment_id
    lineage = card["lineage"]
    tags = {"kubesage.run_id": lineage["run_id"], "kubesage.step": lineage["step"],
            "model_sha256": lineage["model_sha256"]}
    run = client.create_run(exp_id, tags=tags, run_name=f"register-{name}")
    client.log_metric(run.info.run_id, "accuracy", card["metrics"]["accuracy"])
    client.log_artifacts(run.info.run_id, folder, "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # it exists: add a version
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id, tags=tags)
    return str(version.version)
