"""Secrets never written down: planted in the environment, in a config (a webhook URL with a
token) and in a parameter marked secret, then looked for in every output kubesage makes: run
records, step logs and folders, the MLflow store, webhook payloads, the command's own output,
compiled files. Also: no container gets the Docker socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from kubesage import Secret, component
from kubesage.dsl.errors import DefinitionError
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.docker

PARAM_SECRET = "param-s3cret-7d1f"
ENV_SECRET = "env-s3cret-91ac"
URL_TOKEN = "T0KEN-hook-5be2"


class Hook(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        Hook.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def files_holding(folder: str, secrets: list[str]) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:  # a journal SQLite removed while we walked
                continue
            found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return found


def test_secrets_never_reach_an_output(tmp_path, fsx_root: str, docker_client: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.received.clear()
    port = server.server_address[1]
    store = tmp_path / "store"
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({
        "mounts": {"fsx": fsx_root}, "store": str(store),
        "webhooks": [f"http://127.0.0.1:{port}/hooks/{URL_TOKEN}",
                     f"http://127.0.0.1:9/hooks/{URL_TOKEN}"]}))  # the second one fails
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": ENV_SECRET, "GITHUB_TOKEN": ENV_SECRET}
    proc = subprocess.run([sys.executable, "-m", "kubesage.cli", "run",
                           "tests/pipelines/secrets.py", "--param", f"token={PARAM_SECRET}",
                           "--config", str(config), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    server.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["parameters"]["token"] == "***" and record["parameters"]["label"] == "public"
    step = record["steps"][0]
    assert step["parameters"]["token"] == "***"
    assert step["returns"] == {"output": len(PARAM_SECRET)}  # the step had the real value
    assert "http://127.0.0.1:9/..." in proc.stderr  # the failing webhook is named, its path not
    # MLflow logs the run in the background: wait for it, then look everywhere
    for _ in range(120):
        shown = run_cli("runs", "--config", str(config), "show", record["run_id"])
        mlflow = store / "mlflow" / "mlflow.db"
        if mlflow.exists() and b"with-secret" in mlflow.read_bytes():
            break
        time.sleep(0.5)
    secrets = [PARAM_SECRET, ENV_SECRET, URL_TOKEN]
    assert files_holding(str(store), secrets) == []
    assert not [s for s in secrets if s in proc.stdout + proc.stderr + shown.stdout]
    assert Hook.received and not [s for s in secrets for body in Hook.received if s.encode() in body]
    for target, suffix in (("kfp", "yaml"), ("sagemaker", "json")):
        out = tmp_path / f"secret.{suffix}"
        run_cli("compile", "tests/pipelines/secrets.py", "--target", target, "-o", str(out),
                check=True)
        assert "token" in out.read_text() and PARAM_SECRET not in out.read_text()


def test_a_secret_never_has_a_default_in_code() -> None:
    with pytest.raises(DefinitionError, match="secret 'token' has a default in code; a secret "
                       "never lives in code"):
        @component
        def leaky(token: Secret = "hunter2") -> int:  # type: ignore[assignment]
            return 0


def test_no_container_gets_the_docker_socket(docker_client: Any, config_file: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "kubesage.cli", "run",
                             "tests/pipelines/probes.py:slow", "--config", config_file],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and not line.startswith("run "):  # an image rebuilt first says so first
            line = proc.stderr.readline()
        run_id = line.split()[1].rstrip(":")
        for _ in range(240):
            found = docker_client.containers.list(filters={"label": f"kubesage.run={run_id}"})
            if found:
                break
            time.sleep(0.25)
        assert found
        for container in found:
            container.reload()
            host = container.attrs["HostConfig"]
            mounts = [m["Source"] for m in container.attrs["Mounts"]]
            assert not any("docker.sock" in m for m in mounts), mounts
            assert not host.get("Privileged")
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
