"""``kubesage submit --target kfp``: what kfp.Client sends to a Kubeflow Pipelines API.

No Kubeflow API server can run on these machines (it needs Kubernetes and images pulled from
registries), so these tests point the real kfp.Client at ``KfpApiRecorder``: a recording HTTP
server on loopback that answers the endpoints kfp.Client calls (``/apis/v2beta1/{healthz,
experiments,runs}``) with documents of the API's shape and records every request; for step logs
it also answers the Kubernetes API's pod log endpoint (``/api/v1/namespaces/NS/pods/POD/log``),
which the ``kubernetes`` client reads. It is the one stand-in in the test suite; the tests assert
on the requests the clients really made.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, mlflow_client, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.server]


class KfpApiRecorder:
    """Records requests and answers like a KFP v2beta1 API server; runs go through ``states``."""

    def __init__(self, states: tuple[str, ...] = ("PENDING", "RUNNING", "SUCCEEDED"),
                 runs_accepted: int | None = None,
                 tasks: dict[str, tuple[str, ...]] | None = None,
                 after_retry: dict[str, tuple[str, ...]] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.states = states
        # task name -> its state at the 1st, 2nd, ... read of the run (the last one stays)
        self.tasks = tasks or {"preprocess": ("RUNNING", "SUCCEEDED")}
        self.after_retry = after_retry or {"states": ("RUNNING", "SUCCEEDED")}
        self.runs_accepted = runs_accepted  # later run submissions get a 500
        # the Kubernetes API's pod logs (GET /api/v1/namespaces/NS/pods/POD/log): pod -> text
        self.pod_logs: dict[str, str] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.reads: dict[str, int] = {}
        self.created = time.time()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                url = urllib.parse.urlparse(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                query = urllib.parse.parse_qs(url.query)
                recorder.requests.append({"method": method, "path": url.path, "query": query,
                                          "body": body, "auth": self.headers.get("Authorization")})
                code, doc = recorder.respond(method, url.path, body)
                text = isinstance(doc, str)  # a pod's log: plain text, as the Kubernetes API
                data = doc.encode() if text else json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def respond(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any] | str]:
        if path.startswith("/api/v1/namespaces/") and path.endswith("/log") and method == "GET":
            pod = path.split("/")[-2]
            if pod not in self.pod_logs:
                return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound",
                             "code": 404, "message": f'pods "{pod}" not found'}
            return 200, self.pod_logs[pod]
        if path == "/apis/v2beta1/healthz":
            return 200, {"commit_sha": "recorder", "tag_name": "2.5.0", "multi_user": True}
        if path == "/apis/v2beta1/experiments" and method == "GET":
            return 200, {"experiments": list(self.experiments.values()),
                         "total_size": len(self.experiments)}
        if path == "/apis/v2beta1/experiments" and method == "POST":
            exp = {"experiment_id": f"exp-{len(self.experiments) + 1}", "storage_state": "AVAILABLE",
                   "display_name": body["display_name"], "namespace": body.get("namespace", "")}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if path == "/apis/v2beta1/runs" and method == "POST":
            if self.runs_accepted is not None and len(self.runs) >= self.runs_accepted:
                return 500, {"error": "internal error (recorder)", "code": 13}
            run = dict(body, run_id=f"run-{len(self.runs) + 1}", state=self.states[0])
            self.runs[run["run_id"]] = run
            return 200, run
        if path.endswith(":retry") and method == "POST":
            run_id = path.rsplit("/", 1)[-1].removesuffix(":retry")
            self.reads[run_id] = 0  # the run goes on: through the after_retry states
            self.runs[run_id]["retried"] = True
            return 200, {}
        if path.startswith("/apis/v2beta1/runs/") and method == "GET":
            run_id = path.rsplit("/", 1)[-1]
            n = self.reads[run_id] = self.reads.get(run_id, 0) + 1
            run = self.runs[run_id]
            retried = run.get("retried")
            states = self.after_retry["states"] if retried else self.states
            tasks = {k: v for k, v in self.after_retry.items() if k != "states"} if retried \
                else self.tasks
            details = [{"task_id": "t0", "display_name": "root", "state": "RUNNING"}]
            for i, (name, seq) in enumerate(tasks.items()):
                details.append({"task_id": f"t{i + 1}", "display_name": name,
                                "state": seq[min(n - 1, len(seq) - 1)],
                                "child_tasks": [{"task_id": f"t{i + 1}-driver",
                                                 "pod_name": f"{run_id}-{name}-driver"},
                                                {"task_id": f"t{i + 1}-executor",
                                                 "pod_name": f"{run_id}-{name}-executor"}],
                                "start_time": _iso(self.created),
                                "end_time": _iso(self.created + i + 2)})
            return 200, dict({k: v for k, v in run.items() if k != "retried"},
                             state=states[min(n, len(states) - 1)],
                             run_details={"task_details": details})
        return 404, {"error": f"{method} {path} is not answered by the recorder", "code": 5}

    def of(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def __enter__(self) -> KfpApiRecorder:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def api() -> Iterator[KfpApiRecorder]:
    with KfpApiRecorder() as recorder:
        yield recorder


@pytest.fixture(autouse=True)
def _registry(pushed_images: str) -> None:
    """Submission checks that the images are in their registry: the loopback one."""
    REGISTRY[:] = [pushed_images]


REGISTRY: list[str] = []


def config(tmp_path: Any, host: str) -> str:
    with open(os.path.join(REPO, "config", "kfp.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["host"] = host
    doc["image"] = {"registry": REGISTRY[0]}
    doc["wait"] = {"poll_seconds": 0.05}
    doc["local"] = {"config": "local.yaml"}  # its store records the submitted runs
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({
        "store": str(tmp_path / "store"), "mounts": {"fsx": os.path.join(REPO, "data", "fsx")}}))
    path = tmp_path / "kfp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_submit_pipeline_file_and_stream_status(tmp_path, api: KfpApiRecorder) -> None:
    proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                   "--param", "epochs=3", "--config", config(tmp_path, api.url), "--wait")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is only the JSON: kfp.Client's own prints go to stderr
    assert result["runs"][0]["run_id"] == "run-1" and result["runs"][0]["status"] == "succeeded"
    assert result["namespace"] == "kubeflow-user-example-com" and result["experiment"] == "kubesage"
    # the experiment is looked up in the namespace, then created there
    lookup = api.of("GET", "/apis/v2beta1/experiments")[0]
    assert lookup["query"]["namespace"] == ["kubeflow-user-example-com"]
    assert '"stringValue": "kubesage"' in lookup["query"]["filter"][0]
    assert api.of("POST", "/apis/v2beta1/experiments")[0]["body"] == {
        "display_name": "kubesage", "namespace": "kubeflow-user-example-com"}
    run = api.of("POST", "/apis/v2beta1/runs")[0]["body"]
    assert run["experiment_id"] == "exp-1"
    assert run["display_name"].startswith("image-classification-")
    assert run["service_account"] == "default-editor"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "image-classification"
    params = run["runtime_config"]["parameters"]
    assert params["epochs"] == 3 and params["threshold"] == 0.9  # typed, defaults included
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert platform["deploymentSpec"]["executors"]["exec-preprocess"]["pvcMount"][0]["constant"] == \
        "fsx-lustre-claim"
    # --wait read the run until it ended and streamed run and task states
    assert len(api.of("GET", "/apis/v2beta1/runs/run-1")) == 2
    # streamed as the local runner streams a run, and summed up the same way
    run_id = result["runs"][0]["kubesage_run_id"]
    assert f"run {run_id}: " in proc.stderr and "> preprocess started" in proc.stderr
    assert "+ preprocess succeeded in 2.0s" in proc.stderr and "root" not in proc.stderr
    assert f"run {run_id} succeeded in" in proc.stderr
    assert f"run {run_id}  succeeded  (service" in proc.stderr
    # the run is recorded like a local one
    record = json.loads(run_cli("runs", "--config", str(tmp_path / "local.yaml"), "show", run_id,
                                "--json", check=True).stdout)
    assert record["target"] == "kfp" and record["status"] == "succeeded"
    assert record["remote"]["run_id"] == "run-1" and record["remote"]["host"] == api.url
    assert record["parameters"]["epochs"] == 3
    kept = record["remote"]["compiled"]
    assert hashlib.sha256(open(kept, "rb").read()).hexdigest() == record["compiled_sha256"]
    assert next(yaml.safe_load_all(open(kept))) == run["pipeline_spec"]["pipeline_spec"]
    assert all(d.startswith("sha256:") for d in record["images"].values()) and record["images"]
    assert [s["name"] for s in record["steps"]][:2] == ["preprocess", "train"]
    assert record["steps"][0]["status"] == "succeeded"
    assert record["git"]["commit"]


def test_submit_compiled_yaml_with_env_overrides(tmp_path, api: KfpApiRecorder, monkeypatch) -> None:
    package = tmp_path / "ic.yaml"
    run_cli("compile", "pipelines/image_classification.py", "--target", "kfp", "-o", str(package),
            "--config", config(tmp_path, "http://unused.invalid"), check=True)
    monkeypatch.setenv("KFP_HOST", api.url)
    monkeypatch.setenv("KFP_NAMESPACE", "team-a")
    monkeypatch.setenv("KFP_EXPERIMENT", "nightly")
    monkeypatch.setenv("KFP_RUN_NAME", "digits-nightly")
    monkeypatch.setenv("KFP_TOKEN", "t0ken")
    from kubesage.targets import SubmitOptions
    from kubesage.targets import kfp as kfp_target

    result = kfp_target.TARGET.submit(str(package), SubmitOptions(
        params={"threshold": "0.95"}, config=config(tmp_path, "http://unused.invalid")))
    assert result["host"] == api.url and result["runs"][0]["run_name"] == "digits-nightly"
    run = api.of("POST", "/apis/v2beta1/runs")[0]
    assert run["body"]["display_name"] == "digits-nightly"
    assert run["body"]["runtime_config"]["parameters"] == {"threshold": 0.95}
    assert run["auth"] == "Bearer t0ken"
    assert api.of("POST", "/apis/v2beta1/experiments")[0]["body"] == {
        "display_name": "nightly", "namespace": "team-a"}
    assert not api.of("GET", "/apis/v2beta1/runs/run-1")  # no --wait


def test_unknown_parameter_of_a_compiled_file_is_named_before_anything_is_sent(
        tmp_path, api: KfpApiRecorder) -> None:
    package = tmp_path / "ic.yaml"
    run_cli("compile", "pipelines/image_classification.py", "--target", "kfp", "-o", str(package),
            check=True)
    proc = run_cli("submit", str(package), "--target", "kfp", "--param", "epoch=3",
                   "--config", config(tmp_path, api.url))
    assert proc.returncode == 2
    assert "pipeline 'image-classification'" in proc.stderr and "has no parameter 'epoch'" in proc.stderr
    assert "arch, epochs, image_size" in proc.stderr
    assert api.requests == []


def test_a_failed_run_fails_the_wait(tmp_path) -> None:
    with KfpApiRecorder(states=("PENDING", "RUNNING", "FAILED")) as api:
        proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                       "--config", config(tmp_path, api.url), "--wait")
    assert proc.returncode == 1  # as a failed local run
    assert "run run-1" not in proc.stderr and " failed  (service" in proc.stderr
    assert "on kfp: " + api.url + "/#/runs/details/run-1" in proc.stderr


def test_one_run_per_client_needs_a_client_parameter(tmp_path, api: KfpApiRecorder) -> None:
    proc = run_cli("submit", "tests/pipelines/kfp_shapes.py:per-client", "--target", "kfp",
                   "--config", config(tmp_path, api.url), "--clients", "acme,globex")
    assert proc.returncode == 0, proc.stderr
    runs = [r["body"] for r in api.of("POST", "/apis/v2beta1/runs")]
    assert [r["runtime_config"]["parameters"]["clients"] for r in runs] == [["acme"], ["globex"]]
    assert runs[0]["display_name"].endswith("-acme") and runs[1]["display_name"].endswith("-globex")
    proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                   "--config", config(tmp_path, api.url), "--clients", "acme")
    assert proc.returncode == 2 and "needs a 'client' (str) or 'clients' (list) parameter" in proc.stderr


def test_a_failure_mid_fan_out_names_the_runs_already_started(tmp_path) -> None:
    with KfpApiRecorder(runs_accepted=1) as api:
        proc = run_cli("submit", "tests/pipelines/kfp_shapes.py:per-client", "--target", "kfp",
                       "--config", config(tmp_path, api.url), "--clients", "acme,globex")
    assert proc.returncode == 2
    assert "-globex to " + api.url + " failed" in proc.stderr
    assert "already started: " in proc.stderr and api.url + "/#/runs/details/run-1" in proc.stderr


def test_no_host_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KFP_HOST", raising=False)
    proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                   "--config", config(tmp_path, ""))
    assert proc.returncode == 2
    assert "no Kubeflow Pipelines host: set 'host' in" in proc.stderr and "or KFP_HOST" in proc.stderr


def _runs(tmp_path: Any, *args: str) -> Any:
    return run_cli(*args[:1], "--config", str(tmp_path / "local.yaml"), *args[1:])


def test_refresh_then_continue_a_failed_run_with_the_retry_api(tmp_path) -> None:
    """A run that fails at train: `runs refresh` reads it back, `rerun --from-failed` asks the
    API to retry it, and the retried run is watched to its end."""
    failing = {"preprocess": ("RUNNING", "SUCCEEDED"), "train": ("PENDING", "RUNNING", "FAILED")}
    with KfpApiRecorder(states=("PENDING", "RUNNING", "RUNNING", "FAILED"), tasks=failing,
                        after_retry={"states": ("RUNNING", "RUNNING", "SUCCEEDED"),
                                     "preprocess": ("SUCCEEDED",),
                                     "train": ("RUNNING", "SUCCEEDED")}) as api:
        proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                       "--config", config(tmp_path, api.url), "--tag", "team=vision")
        assert proc.returncode == 0, proc.stderr
        run_id = json.loads(proc.stdout)["runs"][0]["kubesage_run_id"]
        listed = _runs(tmp_path, "runs", "list", "--tag", "team=vision")
        assert run_id in listed.stdout and "kfp*" in listed.stdout and "running" in listed.stdout
        # a run still running cannot be continued: its state must be read first
        early = _runs(tmp_path, "rerun", run_id, "--from-failed")
        assert early.returncode == 2 and f"kubesage runs refresh {run_id}" in early.stderr
        states = []
        for _ in range(3):
            refreshed = _runs(tmp_path, "runs", "refresh")
            assert refreshed.returncode == 0, refreshed.stderr
            states.append(refreshed.stdout.split()[2] if refreshed.stdout else "")
        assert states == ["running", "running", "failed"]
        record = json.loads(_runs(tmp_path, "runs", "show", run_id, "--json").stdout)
        steps = {s["name"]: s["status"] for s in record["steps"]}
        assert steps["preprocess"] == "succeeded" and steps["train"] == "failed"
        assert record["tags"] == {"team": "vision"}

        again = _runs(tmp_path, "rerun", run_id, "--from-failed", "--wait")
        assert again.returncode == 0, again.stderr
        retry = api.of("POST", "/apis/v2beta1/runs/run-1:retry")
        assert len(retry) == 1 and len(api.of("POST", "/apis/v2beta1/runs")) == 1  # same run
        assert "+ train succeeded" in again.stderr
        assert "> preprocess started" not in again.stderr  # it had succeeded: not run again
        new = json.loads(_runs(tmp_path, "runs", "list", "--json").stdout)[0]
        assert new["run_id"] != run_id and new["status"] == "succeeded"
        shown = json.loads(_runs(tmp_path, "runs", "show", new["run_id"], "--json").stdout)
        assert shown["rerun_of"] == run_id and shown["remote"]["how"] == "retry"
        assert shown["remote"]["run_id"] == "run-1"


def test_exact_rerun_submits_the_same_file_and_refuses_a_changed_one(tmp_path, api) -> None:
    proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                   "--param", "epochs=2", "--config", config(tmp_path, api.url))
    run_id = json.loads(proc.stdout)["runs"][0]["kubesage_run_id"]
    again = _runs(tmp_path, "rerun", run_id)
    assert again.returncode == 0, again.stderr
    first, second = (r["body"] for r in api.of("POST", "/apis/v2beta1/runs"))
    assert second["pipeline_spec"] == first["pipeline_spec"]
    assert second["runtime_config"]["parameters"] == first["runtime_config"]["parameters"]
    assert second["runtime_config"]["parameters"]["epochs"] == 2
    newest = json.loads(_runs(tmp_path, "runs", "list", "--json").stdout)[0]
    assert json.loads(_runs(tmp_path, "runs", "show", newest["run_id"], "--json").stdout)[
        "rerun_of"] == run_id
    record = json.loads(_runs(tmp_path, "runs", "show", run_id, "--json").stdout)
    # an image pushed again under the same tag with other content: refused, by name
    import docker

    from tests.conftest import push_stand_in

    client = docker.from_env()
    (ref,) = record["images"]
    other = client.images.build(fileobj=io.BytesIO(b"FROM scratch\nLABEL other=1\n"), rm=True)[0]
    repo, tag = ref.rsplit(":", 1)
    other.tag(repo, tag)
    for chunk in client.images.push(repo, tag, stream=True, decode=True):
        assert "error" not in chunk, chunk
    try:
        refused = _runs(tmp_path, "rerun", run_id)
        assert refused.returncode == 2 and f"image {ref} has changed in its registry" in refused.stderr
    finally:
        push_stand_in(client, [ref])  # back as the other tests expect it
    assert len(api.of("POST", "/apis/v2beta1/runs")) == 2
    with open(record["remote"]["compiled"], "a") as f:
        f.write("# edited\n")
    refused = _runs(tmp_path, "rerun", run_id)
    assert refused.returncode == 2 and "is gone or changed" in refused.stderr
    assert len(api.of("POST", "/apis/v2beta1/runs")) == 2  # nothing more was sent


def test_a_secret_submitted_is_never_recorded(tmp_path, api, monkeypatch) -> None:
    secret = "s3cr3t-submitted-value"
    proc = run_cli("submit", "tests/pipelines/secrets.py", "--target", "kfp", "--param",
                   f"token={secret}", "--config", config(tmp_path, api.url))
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["runs"][0]["kubesage_run_id"]
    assert api.of("POST", "/apis/v2beta1/runs")[0]["body"]["runtime_config"]["parameters"][
        "token"] == secret  # the service gets it: it is the run's parameter there
    record = json.loads(_runs(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert record["parameters"]["token"] == "***"
    for folder, _, files in os.walk(tmp_path / "store"):
        for name in files:
            assert secret.encode() not in open(os.path.join(folder, name), "rb").read(), name
    monkeypatch.delenv("KUBESAGE_SECRET_TOKEN", raising=False)
    refused = _runs(tmp_path, "rerun", run_id)
    assert refused.returncode == 2 and "set KUBESAGE_SECRET_TOKEN to re-run it" in refused.stderr
    monkeypatch.setenv("KUBESAGE_SECRET_TOKEN", "from-the-env")
    assert _runs(tmp_path, "rerun", run_id).returncode == 0
    assert api.of("POST", "/apis/v2beta1/runs")[1]["body"]["runtime_config"]["parameters"][
        "token"] == "from-the-env"


def test_deploy_writes_inference_services_the_kserve_schema_accepts(tmp_path) -> None:
    from kubesage.targets.kfp.deploy import schema_problems

    out = tmp_path / "isvc.yaml"
    cfg = config(tmp_path, "http://unused.invalid")
    proc = run_cli("deploy", "--target", "kfp", "--name", "digits", "--model",
                   "acme=s3://models/digits/acme/", "--model", "globex=pvc://models-claim/globex",
                   "-o", str(out), "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inference_services"] == ["digits-acme", "digits-globex"]
    docs = list(yaml.safe_load_all(out.read_text()))
    assert [d["metadata"]["name"] for d in docs] == ["digits-acme", "digits-globex"]
    for doc, uri in zip(docs, ("s3://models/digits/acme/", "pvc://models-claim/globex"), strict=True):
        assert schema_problems(doc) == []
        assert doc["metadata"]["namespace"] == "kubeflow-user-example-com"
        predictor = doc["spec"]["predictor"]
        (container,) = predictor["containers"]
        assert container["name"] == "kserve-container"
        assert container["image"].startswith(REGISTRY[0] + "/kubesage/serve:code-")
        assert {"name": "STORAGE_URI", "value": uri} in container["env"]
        assert predictor["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000,
                                                "runAsGroup": 0}
        assert predictor["serviceAccountName"] == "default-editor"

    # the schema is the CRD's: a misspelt field and a wrong type are named
    bad = docs[0]
    bad["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad["spec"]["predictor"]["minReplicas"] = "two"
    problems = "; ".join(schema_problems(bad))
    assert "'imagePullPolicyy' was unexpected" in problems
    assert "spec.predictor.minReplicas: 'two' is not of type 'integer'" in problems

    # a folder on this machine is not something a cluster reads; --apply needs kubectl
    refused = run_cli("deploy", str(tmp_path), "--target", "kfp", "--name", "digits",
                      "--config", cfg, "-o", str(tmp_path / "x.yaml"))
    assert refused.returncode == 2 and "is not a URI the cluster can read" in refused.stderr
    assert not (tmp_path / "x.yaml").exists()
    no_kubectl = run_cli_env({"PATH": os.path.dirname(sys.executable)}, "deploy",
                             "s3://models/digits/", "--target", "kfp", "--name", "digits",
                             "--config", cfg, "-o", str(tmp_path / "y.yaml"), "--apply")
    assert no_kubectl.returncode == 2 and "--apply needs kubectl on PATH" in no_kubectl.stderr
    assert (tmp_path / "y.yaml").exists()  # written, and said where


def run_cli_env(env: dict[str, str], *args: str) -> Any:
    import subprocess

    return subprocess.run([sys.executable, "-m", "kubesage.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def test_a_submitted_run_is_refused_as_a_kubeflow_model_by_name(tmp_path, api) -> None:
    """A Kubeflow run's artifact URIs live in ML Metadata, which the runs API does not serve:
    deploying a run's model needs its URI, and the refusal says so (nothing is written)."""
    cfg = config(tmp_path, api.url)
    proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp", "--config", cfg)
    run_id = json.loads(proc.stdout)["runs"][0]["kubesage_run_id"]
    out = tmp_path / "isvc.yaml"
    refused = run_cli("deploy", "--target", "kfp", "--name", "digits", "--model",
                      f"acme={run_id}", "--config", cfg, "-o", str(out))
    assert refused.returncode == 2
    assert f"model 'acme': {run_id} is run {run_id}, but the Kubeflow runs API does not give" \
        in refused.stderr and "--model acme=s3://" in refused.stderr
    replace = run_cli("deploy", "--target", "kfp", "--name", "digits", "--model",
                      "acme=s3://models/acme/", "--replace", "--config", cfg, "-o", str(out))
    assert replace.returncode == 2 and "--replace: Kubeflow deploys one InferenceService" in \
        replace.stderr
    assert not out.exists()
    # per client, one client alone is still <name>-<client>: it redeploys beside the others
    one = run_cli("deploy", "--target", "kfp", "--name", "digits", "--model",
                  "acme=s3://models/acme/", "--per-client", "--config", cfg, "-o", str(out))
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["inference_services"] == ["digits-acme"]


def test_a_submitted_run_tells_the_webhooks_and_mlflow_as_a_local_run_does(tmp_path, api) -> None:
    """`submit --wait` posts each step's and the run's new state to the local config's
    webhooks, and logs the ended run to MLflow in the background, as `run` does."""
    import time

    from kubesage.config.local import load_local_config
    from tests.test_notify import _Hook, _serve

    served = _serve(_Hook)
    url, received = next(served)
    cfg = config(tmp_path, api.url)
    local = yaml.safe_load((tmp_path / "local.yaml").read_text())
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({**local, "webhooks": [url]}))
    proc = run_cli("submit", "pipelines/image_classification.py", "--target", "kfp",
                   "--config", cfg, "--wait", "--param", "epochs=3")
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["runs"][0]["kubesage_run_id"]
    events = [m["kubesage"] for m in received]
    assert {"run_id": run_id, "pipeline": "image-classification", "status": "succeeded",
            "target": "kfp", "step": "preprocess", "cached": False, "metrics": {}} in events
    assert events[-1]["status"] == "succeeded" and "step" not in events[-1]
    assert any(m["text"].endswith(f"{run_id}: run succeeded") for m in received)
    next(served, None)

    client = mlflow_client(load_local_config(str(tmp_path / "local.yaml")).tracking_uri)
    deadline, found = time.time() + 90, []
    while time.time() < deadline:  # logged by a background process; complete once tagged
        exp = client.get_experiment_by_name("image-classification")
        found = client.search_runs([exp.experiment_id]) if exp else []
        if found and found[0].data.tags.get("kubesage.logged") == "1":
            break
        time.sleep(1)
    log = tmp_path / "store" / "logs" / "experiments.log"
    assert [r.data.tags["kubesage.run_id"] for r in found] == [run_id], (
        log.read_text() if log.exists() else "no log")
    assert found[0].data.params["epochs"] == "3"
