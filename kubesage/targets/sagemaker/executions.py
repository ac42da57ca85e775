"""Submitted SageMaker executions as runs: read their state back, continue failed ones.

``read`` asks the service for the execution's status (``DescribePipelineExecution``), its steps
(``ListPipelineExecutionSteps``: status, times, failure reason, cache hits, the job behind each)
and, per job, where its outputs went (``Describe{Processing,Training,Transform}Job``) and the
metrics and returned values kubesage's runtime wrote beside them (the processing step's
``kubesage-result/result.json``, the training job's ``output.tar.gz``). A fused job (several steps
in one job, ``fused.py``) is reported as its members, each with what it left (its own result
file in the job's ``kubesage-members`` output, or in its ``output.tar.gz``). What the service does
not answer is a ``note`` on the record, never a failure.

``resume`` continues a failed execution (``rerun --from-failed``):
- a ``Failed`` execution with ``RetryPipelineExecution``: the service runs its failed steps and
  what follows them again, in the same execution;
- a ``Stopped`` one (which the service does not retry) with a new execution whose
  ``SelectiveExecutionConfig`` selects every step that did not succeed; the others' outputs come
  from the source execution.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import datetime
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.record import RunRecord
from kubesage.runs.submitted import ServiceState, StepState, resumed
from kubesage.store import RunStore

# SageMaker's PipelineExecutionStatus and StepStatus -> kubesage's run and step statuses
RUN_STATUS = {"Executing": "running", "Stopping": "running", "Succeeded": "succeeded",
              "Failed": "failed", "Stopped": "cancelled"}
STEP_STATUS = {"Starting": "running", "Executing": "running", "Stopping": "running",
               "Succeeded": "succeeded", "Failed": "failed", "Stopped": "cancelled"}
RESULT_OUTPUT, PROCESSING_RESULT, TRAINING_RESULT = ("kubesage-result", "result.json",
                                                     "kubesage-result.json")


class ExecutionError(KubesageError):
    """The service cannot tell or do what a re-run of a submitted execution needs."""


JOB_KINDS = ("ProcessingJob", "TrainingJob", "TransformJob")  # a step's Metadata keys


def read(client: Any, record: RunRecord, s3: Any = None) -> ServiceState:
    """The execution of ``record`` as the service reports it (``s3``: a client to read results)."""
    from botocore.exceptions import BotoCoreError, ClientError

    arn = record.remote["arn"]
    try:
        described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
    except (BotoCoreError, ClientError) as e:
        raise ExecutionError(f"reading execution {arn} failed: {str(e)[:200]}; check your AWS "
                             "credentials and network (AWS_ENDPOINT_URL for an emulator)") from None
    status = RUN_STATUS.get(described["PipelineExecutionStatus"], "running")
    try:
        listed = _steps(client, arn)
    except ClientError as e:  # moto does not implement ListPipelineExecutionSteps
        code = e.response.get("Error", {}).get("Code", "") or str(e)
        return ServiceState(status, [], f"step details unavailable ({code})")
    notes: list[str] = []
    fused = _fused(record)
    states: list[StepState] = []
    for item in reversed(listed):  # oldest first
        state = _step(client, s3, item, notes)
        members = fused.get(state.name)
        states += _members(s3, state, members, notes) if members else [state]
    return ServiceState(status, states, "; ".join(notes))


def _fused(record: RunRecord) -> dict[str, list[str]]:
    """A fused job's step name -> its members, from the compiled file the record kept."""
    from kubesage.targets.sagemaker.limits import all_steps
    from kubesage.targets.sagemaker.local_members import members_of

    try:
        with open(record.remote.get("compiled", "")) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return {s["Name"]: members_of(s) for s in all_steps(doc.get("Steps", [])) if members_of(s)}


def _members(s3: Any, job: StepState, members: list[str], notes: list[str]) -> list[StepState]:
    """The members of a fused job: each one's state and what it left."""
    from kubesage.runtime.members import MEMBERS_OUTPUT, RESULTS_DIR

    states, missing = [], False
    for name in members:
        state = StepState(name=name, status=job.status, started=job.started, ended=job.ended,
                          cached=job.cached, attempts=job.attempts)
        raw = None
        if s3 is not None and job.status in ("succeeded", "failed"):
            try:
                if MEMBERS_OUTPUT in job.outputs:
                    base = job.outputs[MEMBERS_OUTPUT]["uri"].rstrip("/")
                    raw = _get(s3, f"{base}/{name}/{RESULT_OUTPUT}/{PROCESSING_RESULT}")
                elif "model.tar.gz" in job.outputs:
                    packed = _get(s3, job.outputs["model.tar.gz"]["uri"].rsplit("/", 1)[0]
                                  + "/output.tar.gz")
                    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
                        names = tar.getnames()
                        inner = next((n for n in (f"{RESULTS_DIR}/{name}.json", TRAINING_RESULT)
                                      if n in names), None)
                        found = tar.extractfile(inner) if inner else None
                        raw = found.read() if found is not None else None
            except Exception as e:  # not there (the job failed before it): said, not fatal
                notes.append(f"{name}: result unavailable ({type(e).__name__})")
        if raw is not None:
            _result(state, raw)
            state.status, state.error = "succeeded", ""
        elif job.status == "failed":
            state.status = "not_run" if missing else "failed"
            state.error = "" if missing else job.error
            missing = True
        states.append(state)
    return states


def _steps(client: Any, arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = client.list_pipeline_execution_steps(PipelineExecutionArn=arn, **token)
        found += page.get("PipelineExecutionSteps", [])
        if not page.get("NextToken"):
            return found
        token = {"NextToken": page["NextToken"]}


def _time(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _step(client: Any, s3: Any, item: dict[str, Any], notes: list[str]) -> StepState:
    state = StepState(name=item["StepName"], status=STEP_STATUS.get(item["StepStatus"], "running"),
                      started=_time(item.get("StartTime")), ended=_time(item.get("EndTime")),
                      error=item.get("FailureReason", ""), attempts=item.get("AttemptCount", 0),
                      cached="CacheHitResult" in item)
    meta = item.get("Metadata", {})
    for kind in JOB_KINDS:  # the job behind the step: where its logs are
        if "Arn" in meta.get(kind, {}):
            state.remote = {"kind": kind, "job": meta[kind]["Arn"]}
    if state.status != "succeeded" or s3 is None:
        return state
    try:
        if "ProcessingJob" in meta:
            job = client.describe_processing_job(
                ProcessingJobName=meta["ProcessingJob"]["Arn"].rsplit("/", 1)[-1])
            outputs = {o["OutputName"]: o["S3Output"]["S3Uri"]
                       for o in job.get("ProcessingOutputConfig", {}).get("Outputs", [])}
            result_uri = outputs.pop(RESULT_OUTPUT, None)
            state.outputs = {n: {"uri": u} for n, u in outputs.items()}
            if result_uri:
                _result(state, _get(s3, result_uri.rstrip("/") + "/" + PROCESSING_RESULT))
        elif "TransformJob" in meta:  # a batch transform: where its answers are
            job = client.describe_transform_job(
                TransformJobName=meta["TransformJob"]["Arn"].rsplit("/", 1)[-1])
            state.outputs = {"transform": {"uri": job["TransformOutput"]["S3OutputPath"]}}
        elif "TrainingJob" in meta:
            job = client.describe_training_job(
                TrainingJobName=meta["TrainingJob"]["Arn"].rsplit("/", 1)[-1])
            model = job.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
            state.outputs = {"model.tar.gz": {"uri": model}} if model else {}
            if model:
                packed = _get(s3, model.rsplit("/", 1)[0] + "/output.tar.gz")
                with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
                    member = tar.extractfile(TRAINING_RESULT)
                    if member is not None:
                        _result(state, member.read())
    except Exception as e:  # a job or result the service or S3 does not give: say so
        notes.append(f"{state.name}: outputs unavailable ({type(e).__name__}: {str(e)[:120]})")
    return state


def _get(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _result(state: StepState, raw: bytes) -> None:
    doc = json.loads(raw)
    state.metrics = {k: float(v) for k, v in doc.get("metrics", {}).items()}
    state.returns = dict(doc.get("returns", {}))


def resume(client: Any, record: RunRecord, store: RunStore) -> RunRecord:
    """Continue the failed or stopped execution of ``record``; the new run's record."""
    arn = record.remote["arn"]
    status = client.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"]
    if status == "Failed":
        client.retry_pipeline_execution(PipelineExecutionArn=arn,
                                        ClientRequestToken=str(uuid.uuid4()))
        return resumed(record, {"how": "RetryPipelineExecution"}, store)
    if status != "Stopped":
        raise ExecutionError(f"run {record.run_id}: its execution is {status}; only a Failed or "
                             "Stopped execution can be continued (an exact 'kubesage rerun "
                             f"{record.run_id}' starts it again)")
    job_of = {m: job for job, members in _fused(record).items() for m in members}
    todo = list(dict.fromkeys(job_of.get(s.name, s.name) for s in record.steps
                              if s.status != "succeeded"))  # a fused member: its job's step
    if not todo or not any(s.status in ("failed", "cancelled") for s in record.steps):
        raise ExecutionError(f"run {record.run_id}: its record does not say which steps stopped; "
                             f"read them first with 'kubesage runs refresh {record.run_id}'")
    started = client.start_pipeline_execution(
        PipelineName=record.remote["pipeline_name"],
        PipelineExecutionDisplayName=f"{record.pipeline}-resumed"[:82],
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in sorted(record.parameters.items())],
        ClientRequestToken=str(uuid.uuid4()),
        SelectiveExecutionConfig={"SourcePipelineExecutionArn": arn,
                                  "SelectedSteps": [{"StepName": n} for n in todo]})
    return resumed(record, {"how": "SelectiveExecutionConfig", "selected": todo,
                            "arn": started["PipelineExecutionArn"]}, store)
