"""Submit to SageMaker Pipelines with boto3: upsert the pipeline, start executions, poll.

A pipeline file (``.py``) is compiled on the fly; a definition (``.json``) is validated and sent
as is. A fanned-out pipeline (``ParallelFor`` over a list parameter) gets one execution per
client (``--clients a,b``, or the parameter's default list), the client as that parameter's
value. Each execution becomes a run record (``kubesage.runs.submitted``); ``executions`` reads
them back and continues failed ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from typing import Any

from kubesage.docker_engine.images import check_pushed
from kubesage.dsl.pipeline import typed_values
from kubesage.dsl.types import text_form
from kubesage.runs.submitted import Submission, SubmissionError
from kubesage.targets.sagemaker.config import SageMakerConfig
from kubesage.targets.sagemaker.limits import all_steps
from kubesage.targets.sagemaker.parameters import KUBESAGE_TYPES

POLL_ENV = "KUBESAGE_POLL_S"  # seconds between reads of a watched execution (default 15)


class SubmitError(SubmissionError):
    """The service refused a request, or the submission is inconsistent (``submission``: the
    executions started before a failure)."""


def _load(ref: str, config: SageMakerConfig) -> tuple[str, str, dict[str, str], list[str], Any]:
    """(name, definition text, parameter types, fan-out parameters, neutral pipeline or None)."""
    path = ref.partition(":")[0]
    if path.endswith(".py"):
        from kubesage.project.loader import load_pipeline
        from kubesage.targets.sagemaker import with_content_tags
        from kubesage.targets.sagemaker.compiler import definition_json
        from kubesage.targets.sagemaker.instances import check_config
        from kubesage.targets.sagemaker.parameters import fan_out_parameters

        pipeline = load_pipeline(ref)[0].build()
        check_config(config)
        text = definition_json(pipeline, with_content_tags(config, pipeline, path))
        from kubesage.targets.sagemaker.validate import validate_definition

        compiled = json.loads(text)
        problems = validate_definition(compiled, ref, config.region)
        if problems:  # as a compiled file would be: checked before anything is sent
            raise SubmitError(f"{ref}: {len(problems)} problem(s) the SageMaker service would "
                              "refuse: " + "; ".join(problems))
        types = {p["Name"]: p["Type"] for p in compiled["Parameters"]}
        return pipeline.name, text, types, sorted(set(fan_out_parameters(pipeline).values())), pipeline
    if not path.endswith(".json"):
        raise SubmitError(f"{ref}: submit a pipeline file (.py) or a SageMaker definition (.json)")
    from kubesage.targets.sagemaker.validate import validate_definition_file

    validate_definition_file(path, config.region)
    with open(path) as f:
        text = f.read()
    doc = json.loads(text)
    name = re.sub(r"[^a-zA-Z0-9-]", "-", os.path.splitext(os.path.basename(path))[0])[:256]
    types = {p["Name"]: p.get("Type", "String") for p in doc.get("Parameters", [])}
    return name, text, types, fan_out_from_definition(doc), None


def _record_steps(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, type) of each step a run record lists: a fused job's members in its place."""
    from kubesage.targets.sagemaker.local_members import members_of

    found: list[tuple[str, str]] = []
    for step in all_steps(doc.get("Steps", [])):
        members = members_of(step)
        found += [(m, step["Type"]) for m in members] if members else [(step["Name"], step["Type"])]
    return found


def images_of(doc: Any) -> list[str]:
    """Every image a definition's jobs and models run (literal URIs)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("ImageUri", "TrainingImage", "Image") and isinstance(item, str):
                    found.add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc.get("Steps", []))
    return sorted(found)


def fan_out_from_definition(doc: dict[str, Any]) -> list[str]:
    """The parameters a compiled definition keys its artifact paths by: its fan-out."""
    found: set[str] = set()
    for step in doc.get("Steps", []):
        args = step.get("Arguments", {})
        paths = [o.get("S3Output", {}).get("S3Uri")
                 for o in args.get("ProcessingOutputConfig", {}).get("Outputs", [])]
        paths.append(args.get("OutputDataConfig", {}).get("S3OutputPath"))
        for p in paths:
            if isinstance(p, dict) and "Std:Join" in p:
                found |= {v["Get"].split(".", 1)[1] for v in p["Std:Join"]["Values"]
                          if isinstance(v, dict) and str(v.get("Get", "")).startswith("Parameters.")}
    return sorted(found)


def model_package_groups(doc: dict[str, Any], group: str, fan_out: list[str],
                         clients: list[str]) -> list[str]:
    """The groups the definition's RegisterModel steps write to: one per client inside a
    fan-out (``<group>-<client>``), else the config's group; none without registration."""
    names: set[str] = set()
    for step in all_steps(doc.get("Steps", [])):
        if step.get("Type") != "RegisterModel":
            continue
        value = step.get("Arguments", {}).get("ModelPackageGroupName")
        if isinstance(value, str):
            names.add(value)
        elif fan_out and clients:
            names.update(f"{group}-{c}" for c in clients)
        else:
            names.add(group)
    return sorted(names)


def _values(params: dict[str, str], types: dict[str, str], pipeline: Any,
            name: str) -> dict[str, str]:
    """Given parameters as the strings ``PipelineParameters`` takes, checked against the
    pipeline's types, else the definition's (``types``: SageMaker's type names)."""
    if pipeline is not None:
        resolved = pipeline.resolve_parameters(params)  # names and types, with clear errors
        return {k: text_form(resolved[k]) for k in params}
    declared = {n: KUBESAGE_TYPES.get(t, "str") for n, t in types.items()}
    return {k: text_form(v) for k, v in typed_values(name, declared, params).items()}


def submit_pipeline(ref: str, params: dict[str, str], config: SageMakerConfig,
                    clients: list[str] | None = None) -> tuple[dict[str, Any], Submission]:
    """Upsert the pipeline and start its executions under ``config``; what was created and
    started, and the submission as its run records keep it."""
    name, text, types, fan_out, pipeline = _load(ref, config)
    doc = json.loads(text)
    digests = check_pushed(images_of(doc))
    values = _values(params, types, pipeline, name)
    if clients and not fan_out:
        raise SubmitError(f"--clients given, but pipeline '{name}' does not fan out; loop over a "
                          "list parameter with ParallelFor(...) to run one execution per client")
    if len(fan_out) > 1:
        raise SubmitError(f"pipeline '{name}' fans out over {', '.join(fan_out)}; SageMaker "
                          "submission handles one fan-out parameter")
    if fan_out and not clients:
        if pipeline is None:  # a compiled definition keeps one item of the list as the default
            raise SubmitError(f"{ref} fans out over '{fan_out[0]}'; name the clients with "
                              "--clients a,b,... (one execution each)")
        default = pipeline.resolve_parameters({}).get(fan_out[0])
        clients = [str(c) for c in default] if isinstance(default, list) else None
    if fan_out and fan_out[0] in values and clients:
        raise SubmitError(f"pass the clients with --clients, not --param {fan_out[0]}=...")

    from botocore.exceptions import BotoCoreError, ClientError

    client = sagemaker_client(config)
    runs: list[dict[str, Any]] = []
    sub = Submission(
        target="sagemaker", pipeline=name, compiled_text=text, compiled_name=f"{name}.json",
        pipeline_file=ref.partition(":")[0] if pipeline is not None else "",
        pipeline_hash=pipeline.digest() if pipeline is not None else hashlib.sha256(
            text.encode()).hexdigest(),
        images=digests, steps=_record_steps(doc),
        config=config.source if os.path.isfile(config.source) else "",
        secrets=[p.name for p in pipeline.parameters if p.type == "secret"] if pipeline else [])
    try:
        action = _upsert(client, name, text, config)
        groups = model_package_groups(doc, config.model_package_group, fan_out,
                                      [c for c in clients or [] if c])
        for group in groups:
            _ensure_group(client, group)
        items: list[str | None] = list(clients) if clients else [None]
        for item in items:
            given = dict(values)
            if item is not None:
                given[fan_out[0]] = item
            started = client.start_pipeline_execution(
                PipelineName=name,
                PipelineExecutionDisplayName=(f"{name}-{item}" if item else name)[:82],
                PipelineParameters=[{"Name": k, "Value": v} for k, v in sorted(given.items())],
                ClientRequestToken=str(uuid.uuid4()),
            )
            runs.append({"client": item, "arn": started["PipelineExecutionArn"],
                         "parameters": given})
            remote = {"service": "sagemaker", "region": config.region, "pipeline_name": name,
                      "arn": started["PipelineExecutionArn"]}
            if item is not None:
                remote.update(client=item, client_parameter=fan_out[0])
            sub.executions.append((remote, given))
        described = client.describe_pipeline(PipelineName=name)
    except (ClientError, BotoCoreError) as e:
        error = SubmitError(
            f"SageMaker refused the request: {e}{_started(runs)}" if isinstance(e, ClientError)
            else f"cannot reach SageMaker in {config.region}: {e}; check your AWS credentials "
            f"and network (AWS_ENDPOINT_URL for an emulator){_started(runs)}")
        error.submission = sub  # no endpoint, no credentials, no region
        raise error from None
    return {"pipeline": name, "pipeline_arn": described["PipelineArn"], "action": action,
            "parameters": sorted(types), "model_package_groups": groups,
            "executions": runs}, sub


def sagemaker_client(config: SageMakerConfig) -> Any:
    """A boto3 SageMaker client in the config's region (``AWS_ENDPOINT_URL`` reaches an
    emulator)."""
    import boto3

    return boto3.Session(region_name=config.region).client("sagemaker")


def _upsert(client: Any, name: str, text: str, config: SageMakerConfig) -> str:
    from botocore.exceptions import ClientError

    request = {"PipelineName": name, "PipelineDefinition": text, "RoleArn": config.role_arn,
               "PipelineDescription": f"kubesage pipeline {name}"}
    try:
        client.describe_pipeline(PipelineName=name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("ResourceNotFound", "ValidationException"):
            raise
        client.create_pipeline(ClientRequestToken=str(uuid.uuid4()), **request)
        return "created"
    client.update_pipeline(**request)
    return "updated"


def _ensure_group(client: Any, group: str) -> None:
    """RegisterModel steps need their model package group to exist."""
    from botocore.exceptions import ClientError

    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError:
        client.create_model_package_group(ModelPackageGroupName=group,
                                          ModelPackageGroupDescription="registered by kubesage")


def _started(runs: list[dict[str, Any]]) -> str:
    """What a failure leaves running: the executions started before it."""
    return "".join(f"; already started: {r['arn']}" + (f" ({r['client']})" if r["client"] else "")
                   for r in runs)
