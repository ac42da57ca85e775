"""Run one job request of a definition in Docker, under SageMaker's container contract.

Processing (``CreateProcessingJob``): inputs at their ``LocalPath`` (read-only), outputs
uploaded from theirs when the job ends. Training (``CreateTrainingJob``): one container per
host (``algo-1``..``algo-N``) on a private network, each with ``/opt/ml/input/config``
(``hyperparameters.json``, ``resourceconfig.json``, ``inputdataconfig.json``), its channels under
``/opt/ml/input/data`` (S3 from the local store, FSx for Lustre as a read-only bind mount),
``/opt/ml/model`` (packed as ``model.tar.gz``), ``/opt/ml/output`` and the checkpoint folder
kept between attempts. A host killed like a reclaimed spot instance (exit 137) is restarted
from its checkpoints when the job uses managed spot. The first host's ``/opt/ml/output/data`` is
packed as ``output.tar.gz``; the job's metric definitions are read from its log (the last
match of each is its ``FinalMetricDataList`` value).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import tarfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesage.docker_engine.containers import follow_group, labels, remove_group, remove_run
from kubesage.dsl.errors import KubesageError
from kubesage.runs.step_user import hand_to_steps, step_user
from kubesage.runtime.sagemaker_processing import RESULT_FILE, RESULT_OUTPUT
from kubesage.runtime.sagemaker_training import RESULT_FILE as TRAINING_RESULT_FILE
from kubesage.serving.local import wait_ready
from kubesage.targets.sagemaker.local_s3 import LocalS3

SPOT_INTERRUPTED = 137  # SIGKILL: what a container sees when its instance is reclaimed
MAX_SPOT_RESTARTS = 3


class JobFailed(KubesageError):
    """A job's containers exited non-zero (or ran out of time)."""


@dataclass
class JobResult:
    """What a finished job left behind."""

    outputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (uri, local)
    result: dict[str, Any] = field(default_factory=dict)  # the runtime's result file
    properties: dict[str, Any] = field(default_factory=dict)  # Describe*Job response subset
    attempts: int = 1


@dataclass
class _Host:
    name: str
    volumes: list[str]
    env: dict[str, str]


class JobRunner:
    """Starts the containers of one job; ``image_for`` maps an image URI to a local tag and
    ``filesystem_for`` a FileSystemDataSource to a local folder."""

    def __init__(self, client: Any, s3: LocalS3, run_id: str,
                 image_for: Callable[[str], str], filesystem_for: Callable[[dict[str, Any]], str],
                 say: Callable[[str], None]) -> None:
        self.client = client
        self.s3 = s3
        self.run_id = run_id
        self.image_for = image_for
        self.filesystem_for = filesystem_for
        self.say = say

    # -- processing -------------------------------------------------------------------
    def processing(self, step: str, args: dict[str, Any], work: str, job_name: str) -> JobResult:
        app = args["AppSpecification"]
        volumes = []
        for inp in args.get("ProcessingInputs", []):
            s3_input = inp["S3Input"]
            volumes.append(self._read_only(inp["InputName"], s3_input["S3Uri"],
                                           s3_input["LocalPath"]))
        outputs: dict[str, tuple[str, str]] = {}
        for out in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
            local = os.path.join(work, "output", out["OutputName"])
            os.makedirs(local, exist_ok=True)
            hand_to_steps(local)
            volumes.append(f"{local}:{out['S3Output']['LocalPath']}:rw")
            outputs[out["OutputName"]] = (out["S3Output"]["S3Uri"], local)
        count = args["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
        hosts = [_Host(f"algo-{i + 1}", volumes, dict(args.get("Environment", {})))
                 for i in range(count)]
        limit = args.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        result = JobResult()
        try:
            self._run(step, self.image_for(app["ImageUri"]), hosts,
                      app.get("ContainerEntrypoint"), app.get("ContainerArguments"), limit)
        except JobFailed as e:  # a Continuous output reached S3 as it was written
            continuous = {out["OutputName"] for out in args.get("ProcessingOutputConfig", {}).get(
                "Outputs", []) if out["S3Output"].get("S3UploadMode") == "Continuous"}
            for name in sorted(continuous):
                uri, local = outputs[name]
                result.outputs[name] = (uri, self.s3.put_folder(local, uri))
            e.partial = result  # type: ignore[attr-defined]
            raise
        for name, (uri, local) in outputs.items():
            result.outputs[name] = (uri, self.s3.put_folder(local, uri))
        result.properties = {"ProcessingJobName": job_name, "ProcessingOutputConfig": {"Outputs": {
            name: {"OutputName": name, "S3Output": {"S3Uri": uri}}
            for name, (uri, _) in outputs.items()}}}
        result_file = os.path.join(work, "output", RESULT_OUTPUT, RESULT_FILE)
        if os.path.exists(result_file):
            with open(result_file) as f:
                result.result = json.load(f)
        return result

    # -- training ---------------------------------------------------------------------
    def training(self, step: str, args: dict[str, Any], work: str, job_name: str,
                 checkpoints: str | None) -> JobResult:
        spec = args["AlgorithmSpecification"]
        names = [f"algo-{i + 1}" for i in range(args["ResourceConfig"]["InstanceCount"])]
        channels = args.get("InputDataConfig", [])
        hosts = []
        for name in names:
            config = os.path.join(work, name, "input", "config")
            os.makedirs(config, exist_ok=True)
            _write_json(os.path.join(config, "hyperparameters.json"), args.get("HyperParameters", {}))
            _write_json(os.path.join(config, "resourceconfig.json"), {
                "current_host": name, "hosts": names, "network_interface_name": "eth0"})
            _write_json(os.path.join(config, "inputdataconfig.json"), {
                c["ChannelName"]: {"TrainingInputMode": c.get("InputMode", "File")} for c in channels})
            volumes = [f"{config}:/opt/ml/input/config:ro"]
            for channel in channels:
                target = f"/opt/ml/input/data/{channel['ChannelName']}"
                source = channel["DataSource"]
                if "FileSystemDataSource" in source:
                    fs = source["FileSystemDataSource"]
                    mode = "ro" if fs.get("FileSystemAccessMode") == "ro" else "rw"
                    volumes.append(f"{self.filesystem_for(fs)}:{target}:{mode}")
                else:
                    volumes.append(self._read_only(channel["ChannelName"],
                                                   source["S3DataSource"]["S3Uri"], target))
            for folder in ("model", "output"):
                local = os.path.join(work, name, folder)
                os.makedirs(os.path.join(local, "data") if folder == "output" else local,
                            exist_ok=True)
                hand_to_steps(local)
                volumes.append(f"{local}:/opt/ml/{folder}:rw")
            if checkpoints:
                local_path = args.get("CheckpointConfig", {}).get("LocalPath", "/opt/ml/checkpoints")
                volumes.append(f"{checkpoints}:{local_path}:rw")
            env = {**args.get("Environment", {}), "SM_CURRENT_HOST": name,
                   "SM_HOSTS": json.dumps(names), "SM_MODEL_DIR": "/opt/ml/model",
                   "TRAINING_JOB_NAME": job_name}
            env.update({f"SM_CHANNEL_{c['ChannelName'].upper()}":
                        f"/opt/ml/input/data/{c['ChannelName']}" for c in channels})
            hosts.append(_Host(name, volumes, env))
        entrypoint = spec.get("ContainerEntrypoint")
        command = spec.get("ContainerArguments") or (None if entrypoint else ["train"])
        stopping = args.get("StoppingCondition", {})
        spot = bool(args.get("EnableManagedSpotTraining"))
        attempts = 0
        lines: list[str] = []  # the first host's log: the metric definitions read it
        while True:
            attempts += 1
            try:
                self._run(step, self.image_for(spec["TrainingImage"]), hosts, entrypoint, command,
                          stopping.get("MaxRuntimeInSeconds"), lines)
                break
            except JobFailed as e:
                interrupted = getattr(e, "exit_code", None) == SPOT_INTERRUPTED
                if not (spot and interrupted) or attempts > MAX_SPOT_RESTARTS:
                    raise
                self.say(f"! {step}: spot interruption (host killed); resuming from its "
                         "checkpoints")
        s3_output = args["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        model_uri = f"{s3_output}/{job_name}/output/model.tar.gz"
        primary = os.path.join(work, names[0])
        archive = os.path.join(work, "model.tar.gz")
        pack(os.path.join(primary, "model"), archive)
        result = JobResult(attempts=attempts)
        result.outputs["model"] = (model_uri, self.s3.put_file(archive, model_uri))
        self._output_data(primary, work, f"{s3_output}/{job_name}/output/output.tar.gz", result)
        result.properties = {
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "TrainingJobName": job_name,
            "OutputDataConfig": {"S3OutputPath": s3_output},
        }
        metrics = final_metrics(spec.get("MetricDefinitions", []), lines)
        if metrics:
            result.properties["FinalMetricDataList"] = metrics
        result_file = os.path.join(primary, "output", "data", TRAINING_RESULT_FILE)
        if os.path.exists(result_file):
            with open(result_file) as f:
                result.result = json.load(f)
        return result

    def _output_data(self, host: str, work: str, uri: str, result: JobResult) -> None:
        """The host's ``output/data``, as the service uploads it: ``output.tar.gz`` at ``uri``."""
        data = os.path.join(host, "output", "data")
        if any(os.scandir(data)):
            packed = os.path.join(work, "output.tar.gz")
            pack(data, packed)
            result.outputs["output"] = (uri, self.s3.put_file(packed, uri))

    # -- batch transform ----------------------------------------------------------------
    def transform(self, step: str, args: dict[str, Any], model: dict[str, Any], model_dir: str,
                  work: str, job_name: str) -> JobResult:
        """``model_dir``: the model's data as SageMaker puts it at ``/opt/ml/model``."""
        container = model["PrimaryContainer"]
        objects = _objects(self.s3.path(args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]))
        if not objects:
            raise JobFailed(f"{step}: no input objects at "
                            f"{args['TransformInput']['DataSource']['S3DataSource']['S3Uri']}")
        out_dir = os.path.join(work, "output")
        os.makedirs(out_dir, exist_ok=True)
        env = {**container.get("Environment", {}), **args.get("Environment", {})}
        tag = f"ks-sm-{self.run_id[-6:]}-{secrets.token_hex(2)}-{re.sub(r'[^a-zA-Z0-9_.-]', '-', step)}"
        server = self.client.containers.run(
            self.image_for(container["Image"]), ["serve"], detach=True, name=tag,
            environment={"HOME": "/tmp", **env}, user=step_user(),
            volumes=[f"{model_dir}:/opt/ml/model:ro"], ports={"8080/tcp": ("127.0.0.1", None)},
            labels=labels(self.run_id, step))
        try:
            server.reload()
            bound = server.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
            url = f"http://127.0.0.1:{bound}"
            wait_ready(url, server, timeout_s=120)
            self.say(f"{step}: serving container up at {url}")
            requests = 0
            for path, name in objects:
                answers = []
                for payload in _batches(path, args):
                    answers.append(_invoke(url, payload, args, server, step))
                    requests += 1
                joiner = b"\n" if args.get("TransformOutput", {}).get("AssembleWith") == "Line" else b""
                out = os.path.join(out_dir, name + ".out")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with open(out, "wb") as f:
                    for body in answers:
                        f.write(body if not joiner or body.endswith(joiner) else body + joiner)
            self.say(f"{step}: {len(objects)} object(s) in {requests} request(s)")
        finally:
            server.remove(force=True)
        uri = args["TransformOutput"]["S3OutputPath"]
        result = JobResult()
        result.outputs["transform"] = (uri, self.s3.put_folder(out_dir, uri))
        result.properties = {"TransformJobName": job_name, "ModelName": args["ModelName"],
                             "TransformOutput": {"S3OutputPath": uri}}
        return result

    # -- containers -------------------------------------------------------------------
    def _read_only(self, name: str, uri: str, target: str) -> str:
        source = self.s3.path(uri)
        if not os.path.exists(source):
            raise JobFailed(f"input '{name}': nothing at {uri} (local store {source}); the step "
                            "that writes it has not run")
        if os.path.isfile(source):  # an S3 object: it arrives as a file inside the folder
            target = f"{target.rstrip('/')}/{os.path.basename(source)}"
        return f"{source}:{target}:ro"

    def _run(self, step: str, image: str, hosts: list[_Host], entrypoint: list[str] | None,
             command: list[str] | None, limit_s: int | None,
             lines: list[str] | None = None) -> None:
        network = None
        tag = f"ks-sm-{self.run_id[-6:]}-{secrets.token_hex(2)}-{re.sub(r'[^a-zA-Z0-9_.-]', '-', step)}"
        if len(hosts) > 1:  # the hosts of one job share a private network
            network = self.client.networks.create(tag + "-net", driver="bridge",
                                                  labels=labels(self.run_id))
        containers = []
        try:
            for host in hosts:
                options: dict[str, Any] = {}
                if network is not None:
                    options["network"] = network.name
                    options["networking_config"] = {
                        network.name: self.client.api.create_endpoint_config(aliases=[host.name])}
                containers.append(self.client.containers.create(
                    image, command=command, entrypoint=entrypoint, name=f"{tag}-{host.name}",
                    hostname=host.name, volumes=host.volumes,
                    environment={"HOME": "/tmp", **host.env},
                    user=step_user(), shm_size="1g",
                    labels=labels(self.run_id, step), **options))
            tails: deque[str] = deque(maxlen=30)

            def on_line(index: int, line: str) -> None:
                if lines is not None and index == 0:
                    lines.append(line)
                text = (f"algo-{index + 1}: " if len(hosts) > 1 else "") + line
                tails.append(text)
                self.say(text)

            for c in containers:
                c.start()
            try:
                failed, _ = follow_group(containers, on_line, limit_s)
            except TimeoutError:
                raise JobFailed(f"{step}: stopped after MaxRuntimeInSeconds={limit_s}") from None
            if failed:
                error = JobFailed(f"{step}: exit code {failed}; last log lines:\n" + "\n".join(tails))
                error.exit_code = failed  # type: ignore[attr-defined]
                raise error
        finally:
            remove_group(containers, network)

    def cancel(self) -> None:
        """Remove every container and network of the run (Ctrl-C and the other stop signals)."""
        remove_run(self.client, self.run_id)


def final_metrics(definitions: list[dict[str, Any]], lines: list[str]) -> dict[str, Any]:
    """``FinalMetricDataList`` keyed by metric name: each definition's last match in the log."""
    found: dict[str, Any] = {}
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        for line in lines:
            match = pattern.search(line)
            if match:
                try:
                    value = float(match.group(1))
                except (IndexError, ValueError):
                    continue
                found[definition["Name"]] = {"MetricName": definition["Name"], "Value": value}
    return found


def _write_json(path: str, doc: Any) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)


def pack(folder: str, archive: str) -> None:
    """``model.tar.gz`` of a folder, byte-identical for identical contents (no times, owners)."""
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with open(archive, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                tar.add(full, arcname=os.path.relpath(full, folder), filter=clean)


def _objects(prefix: str) -> list[tuple[str, str]]:
    """(local path, name below the prefix's folder) of every object an ``S3Prefix`` selects:
    the keys that start with it (a folder's files, or the files a name prefix matches)."""
    if os.path.isdir(prefix):
        base, found = prefix, [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs]
    else:
        base = os.path.dirname(prefix)
        stem = os.path.basename(prefix)
        found = [os.path.join(base, f) for f in os.listdir(base) if f.startswith(stem)] \
            if os.path.isdir(base) else []
    return sorted((p, os.path.relpath(p, base)) for p in found if os.path.isfile(p))


def _batches(path: str, args: dict[str, Any]) -> list[bytes]:
    """The request bodies of one input object: whole (``SplitType`` None), or its records
    (lines), one per request (``SingleRecord``) or as many as fit ``MaxPayloadInMB``."""
    with open(path, "rb") as f:
        data = f.read()
    if args["TransformInput"].get("SplitType", "None") != "Line":
        return [data]
    records = [line for line in data.split(b"\n") if line.strip()]
    if args.get("BatchStrategy") != "MultiRecord":
        return records
    limit = int(args.get("MaxPayloadInMB", 6)) * 1024 * 1024
    bodies: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for record in records:
        if len(record) > limit:
            raise JobFailed(f"a record of {len(record)} bytes exceeds MaxPayloadInMB="
                            f"{args.get('MaxPayloadInMB', 6)}")
        if current and size + len(record) + 1 > limit:
            bodies.append(b"\n".join(current))
            current, size = [], 0
        current.append(record)
        size += len(record) + 1
    if current:
        bodies.append(b"\n".join(current))
    return bodies


def _invoke(url: str, body: bytes, args: dict[str, Any], server: Any, step: str) -> bytes:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": args["TransformInput"].get("ContentType", "application/octet-stream")}
    accept = args.get("TransformOutput", {}).get("Accept")
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url + "/invocations", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            answer: bytes = r.read()
            return answer
    except urllib.error.HTTPError as e:
        raise JobFailed(f"{step}: POST /invocations answered {e.code}: "
                        f"{e.read().decode(errors='replace')[:500]}") from None
    except OSError as e:
        logs = server.logs().decode(errors="replace").strip().splitlines()
        raise JobFailed(f"{step}: POST /invocations failed ({e}); container log:\n"
                        + "\n".join(logs[-20:])) from None
