"""``kubesage deploy --target sagemaker``: a SageMaker endpoint serving trained models.

One model gives a single-model endpoint: its folder packed as ``model.tar.gz``. Several (one per
client) give a multi-model endpoint: each ``<name>.tar.gz`` under one S3 prefix, which SageMaker
loads into the serving container on demand (the container implements the multi-model contract,
``kubesage.serving``) and a request picks with ``TargetModel``. Then the model, the endpoint
config and the endpoint, with boto3:

- the archives are content-addressed (``<prefix>/models/<name>/<digest>/``), packed
  deterministically, so the same models give the same model and endpoint config names and a
  re-deploy of unchanged models creates nothing new;
- the image is the project's ``kubesage/serve`` named by the code it holds (pushed with
  ``kubesage build --push --target sagemaker``; refused when it is not in its registry);
- the instance type is ``instance_types.serving`` of the target config (default
  ``ml.m5.xlarge``), checked against botocore's ``ProductionVariantInstanceType``;
- an existing endpoint is updated to the new endpoint config (``UpdateEndpoint``), else created.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.targets.sagemaker.config import SageMakerConfig

SERVE_IMAGE = "kubesage/serve"


class DeployError(KubesageError):
    """A deployment cannot be made, or the service refused it."""


def pack(folder: str) -> bytes:
    """``folder``'s files as ``model.tar.gz`` (at the archive's root), the same bytes for the same
    files: sorted, no times, owners or modes of this machine."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for base, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(base, name)
                info = tarfile.TarInfo(os.path.relpath(path, folder))
                info.size, info.mode, info.mtime = os.path.getsize(path), 0o644, 0
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def deploy(models: dict[str, str], name: str, config: SageMakerConfig, image: str,
           client: Any, s3: Any) -> dict[str, Any]:
    """Upload ``models`` (name -> folder), then create or update endpoint ``name`` serving them
    in ``image``; what was created."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kubesage.targets.sagemaker.instances import instance_problem

    problem = instance_problem("Serving", config.serving_instance_type, config.region)
    if problem:
        raise DeployError(f"{config.source}: 'instance_types.serving': {problem}")
    archives = {model: pack(folder) for model, folder in sorted(models.items())}
    digest = hashlib.sha256(b"".join(hashlib.sha256(a).digest() + m.encode()
                                     for m, a in archives.items())).hexdigest()[:12]
    multi = len(archives) > 1
    prefix = config.s3("models", name, digest)
    bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
    uploaded = {}
    versioned = f"{name[:50]}-{digest}"  # model and endpoint config names: <= 63
    try:
        for model, data in archives.items():
            key = f"{key_prefix}/{model}.tar.gz" if multi else f"{key_prefix}/model.tar.gz"
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            uploaded[model] = f"s3://{bucket}/{key}"
        container = {"Image": image, "Mode": "MultiModel" if multi else "SingleModel",
                     "ModelDataUrl": prefix + "/" if multi else uploaded[next(iter(uploaded))]}
        if not _exists(client.describe_model, ModelName=versioned):
            client.create_model(ModelName=versioned, ExecutionRoleArn=config.role_arn,
                                PrimaryContainer=container,
                                EnableNetworkIsolation=config.network_isolation)
        if not _exists(client.describe_endpoint_config, EndpointConfigName=versioned):
            extra = {"KmsKeyId": config.kms_key} if config.kms_key else {}
            client.create_endpoint_config(EndpointConfigName=versioned, ProductionVariants=[{
                "VariantName": "AllTraffic", "ModelName": versioned, "InitialInstanceCount": 1,
                "InstanceType": config.serving_instance_type}], **extra)
        if _exists(client.describe_endpoint, EndpointName=name):
            client.update_endpoint(EndpointName=name, EndpointConfigName=versioned)
            action = "updated"
        else:
            client.create_endpoint(EndpointName=name, EndpointConfigName=versioned)
            action = "created"
    except ClientError as e:
        raise DeployError(f"SageMaker refused the deployment: {e}") from None
    except BotoCoreError as e:
        raise DeployError(f"cannot reach SageMaker in {config.region}: {e}; check your AWS "
                          "credentials and network (AWS_ENDPOINT_URL for an emulator)") from None
    return {"target": "sagemaker", "endpoint": name, "action": action, "model": versioned,
            "endpoint_config": versioned, "image": image, "mode": container["Mode"],
            "instance_type": config.serving_instance_type, "models": uploaded,
            "invoke": (f"aws sagemaker-runtime invoke-endpoint --endpoint-name {name} "
                       "--content-type image/png --body fileb://IMAGE.png"
                       + (" --target-model CLIENT.tar.gz" if multi else "") + " out.json")}


def _exists(describe: Any, **name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        describe(**name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True
