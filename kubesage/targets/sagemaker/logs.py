"""A submitted SageMaker step's log, from CloudWatch Logs.

SageMaker writes each job's output to the log group of its kind (``/aws/sagemaker/
ProcessingJobs``, ``TrainingJobs``, ``TransformJobs``), one stream per host named
``<job name>/<host>...``. A read lists the job's streams and reads each on from where the last
read stopped (CloudWatch's forward token, kept per stream in the cursor); with several hosts,
each line is marked with its host.
"""

from __future__ import annotations

import json
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.logs import PAGE_BYTES, LogPage
from kubesage.runs.record import StepRecord

LOG_GROUPS = {"ProcessingJob": "/aws/sagemaker/ProcessingJobs",
              "TrainingJob": "/aws/sagemaker/TrainingJobs",
              "TransformJob": "/aws/sagemaker/TransformJobs"}
PAGES_PER_READ = 20  # of CloudWatch's (up to 10,000 events or 1 MB each), per stream and read


class LogsError(KubesageError):
    """CloudWatch Logs cannot be read (credentials, network, a group missing)."""


def log_group(step: StepRecord) -> tuple[str, str]:
    """The log group and the job name of a step SageMaker ran."""
    kind, arn = step.remote.get("kind", ""), step.remote.get("job", "")
    if kind not in LOG_GROUPS or not arn:
        raise LogsError(f"step {step.name}: no SageMaker job is known for it yet ('kubesage runs "
                        "refresh' reads the jobs of a submitted run)")
    return LOG_GROUPS[kind], arn.rsplit("/", 1)[-1]


def _streams(client: Any, group: str, job: str) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("describe_log_streams").paginate(
            logGroupName=group, logStreamNamePrefix=job + "/"):
        names += [s["logStreamName"] for s in page.get("logStreams", [])]
    return sorted(names)


def _events(client: Any, group: str, stream: str, token: str) -> tuple[list[str], str, bool]:
    """Messages of ``stream`` after ``token``; the token to read on; whether pages are left."""
    lines: list[str] = []
    size = 0
    for _ in range(PAGES_PER_READ):
        extra = {"nextToken": token} if token else {}
        page = client.get_log_events(logGroupName=group, logStreamName=stream,
                                     startFromHead=True, **extra)
        events = page.get("events", [])
        lines += [e["message"].rstrip("\n") for e in events]
        size += sum(len(e["message"]) for e in events)
        same = page.get("nextForwardToken") == token
        token = page.get("nextForwardToken") or token
        if same or not events:  # CloudWatch hands the same token back at the end
            return lines, token, False
        if size >= PAGE_BYTES:
            return lines, token, True
    return lines, token, True


def read_log(client: Any, step: StepRecord, cursor: str) -> LogPage:
    """The text of the step's job streams after ``cursor``."""
    from botocore.exceptions import BotoCoreError, ClientError

    group, job = log_group(step)
    tokens: dict[str, str] = json.loads(cursor) if cursor else {}
    out: list[str] = []
    more = False
    try:
        streams = _streams(client, group, job)
        for stream in streams:
            lines, tokens[stream], left = _events(client, group, stream, tokens.get(stream, ""))
            host = stream[len(job) + 1:]
            out += [f"[{host}] {line}" if len(streams) > 1 else line for line in lines]
            more = more or left
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return LogPage("", cursor)  # the job has not written anything yet
        raise LogsError(f"reading {group} for job {job} failed: {str(e)[:200]}") from None
    except BotoCoreError as e:
        raise LogsError(f"reading {group} for job {job} failed: {e}; check your AWS credentials "
                        "and network (AWS_ENDPOINT_URL for an emulator)") from None
    text = "".join(line + "\n" for line in out)
    return LogPage(text, json.dumps(tokens, sort_keys=True), more)
