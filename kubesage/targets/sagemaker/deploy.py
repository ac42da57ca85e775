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

Per client: a deploy to an existing multi-model endpoint replaces the clients it names and keeps
the others (their archives copied within S3, never downloaded), so one client is retrained and
redeployed without touching the rest; ``replace`` serves only the models given. A model is a
local folder, a run's output, an ``s3://`` model archive (``#folder`` picks a folder inside) or
the ID of a submitted run (its training job's ``model.tar.gz``), fetched and repacked.
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


def fetch_model(uri: str, s3: Any, dest: str) -> str:
    """The model folder of ``uri`` (``s3://.../model.tar.gz[#folder]`` or an ``s3://`` prefix
    holding the model's files), fetched into ``dest``."""
    import tarfile

    from botocore.exceptions import BotoCoreError, ClientError

    uri, _, inner = uri.partition("#")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    os.makedirs(dest, exist_ok=True)
    try:
        if key.endswith(".tar.gz"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                tar.extractall(dest, filter="data")
        else:
            prefix = key.rstrip("/") + "/"
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in (i for page in pages for i in page.get("Contents", [])):
                path = os.path.join(dest, *item["Key"][len(prefix):].split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                s3.download_file(bucket, item["Key"], path)
    except (ClientError, BotoCoreError) as e:
        raise DeployError(f"cannot fetch the model {uri}: {e}") from None
    if inner:
        folder = os.path.join(dest, inner)
        if not os.path.isdir(folder):
            raise DeployError(f"{uri} holds no folder '{inner}'")
        return folder
    folders = sorted(d for d in os.listdir(dest)
                     if os.path.isdir(os.path.join(dest, d)) and not d.startswith("."))
    loose = [f for f in os.listdir(dest) if os.path.isfile(os.path.join(dest, f))]
    if loose or not folders:
        return dest
    if "model" in folders:  # a training job's archive: a folder per output, the model's "model"
        return os.path.join(dest, "model")
    if len(folders) == 1:
        return os.path.join(dest, folders[0])
    raise DeployError(f"{uri} holds several folders ({', '.join(folders)}); pick one: "
                      f"{uri}#FOLDER")


def deploy(models: dict[str, str], name: str, config: SageMakerConfig, image: str,
           client: Any, s3: Any, multi_model: bool = False, replace: bool = False
           ) -> dict[str, Any]:
    """Upload ``models`` (name -> folder), then create or update endpoint ``name`` serving them
    in ``image`` (a multi-model endpoint for several, or with ``multi_model``), keeping the
    other clients of an existing multi-model endpoint unless ``replace``; what was created."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kubesage.targets.sagemaker.instances import instance_problem

    problem = instance_problem("Serving", config.serving_instance_type, config.region)
    if problem:
        raise DeployError(f"{config.source}: 'instance_types.serving': {problem}")
    archives = {model: pack(folder) for model, folder in sorted(models.items())}
    try:
        kept = {} if replace else _other_clients(client, s3, name, set(archives))
    except ClientError as e:
        raise DeployError(f"SageMaker refused to describe endpoint {name}: {e}") from None
    except BotoCoreError as e:
        raise DeployError(f"cannot reach SageMaker in {config.region}: {e}; check your AWS "
                          "credentials and network (AWS_ENDPOINT_URL for an emulator)") from None
    parts = {**{m: hashlib.sha256(a).digest() for m, a in archives.items()},
             **{m: etag.encode() for m, (_, _, etag) in kept.items()}}
    digest = hashlib.sha256(b"".join(d + m.encode() for m, d in sorted(parts.items()))
                            ).hexdigest()[:12]
    multi = multi_model or len(parts) > 1
    prefix = config.s3("models", name, digest)
    bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
    uploaded = {}
    versioned = f"{name[:50]}-{digest}"  # model and endpoint config names: <= 63
    try:
        for model, data in archives.items():
            key = f"{key_prefix}/{model}.tar.gz" if multi else f"{key_prefix}/model.tar.gz"
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            uploaded[model] = f"s3://{bucket}/{key}"
        for model, (from_bucket, from_key, _) in sorted(kept.items()):  # within S3
            key = f"{key_prefix}/{model}.tar.gz"
            s3.copy_object(Bucket=bucket, Key=key,
                           CopySource={"Bucket": from_bucket, "Key": from_key})
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
            "deployed": sorted(archives), "kept": sorted(kept),
            "invoke": (f"aws sagemaker-runtime invoke-endpoint --endpoint-name {name} "
                       "--content-type image/png --body fileb://IMAGE.png"
                       + (" --target-model CLIENT.tar.gz" if multi else "") + " out.json")}


def _other_clients(client: Any, s3: Any, name: str, named: set[str]
                   ) -> dict[str, tuple[str, str, str]]:
    """The models of endpoint ``name``, if it is a multi-model one, that ``named`` does not
    replace: client -> (bucket, key, ETag) of its archive."""
    if not _exists(client.describe_endpoint, EndpointName=name):
        return {}
    config_name = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    variants = client.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    container = client.describe_model(ModelName=variants[0]["ModelName"]).get("PrimaryContainer", {})
    if container.get("Mode") != "MultiModel":
        return {}
    bucket, _, prefix = container["ModelDataUrl"].removeprefix("s3://").partition("/")
    found = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for item in (i for page in pages for i in page.get("Contents", [])):
        model = item["Key"][len(prefix):].removesuffix(".tar.gz")
        if item["Key"].endswith(".tar.gz") and "/" not in model and model not in named:
            found[model] = (bucket, item["Key"], item["ETag"].strip('"'))
    return found


def _exists(describe: Any, **name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        describe(**name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True
