"""``kubesage serve``: the serving image on this machine, on loopback, for models of past runs.

A model is a folder (``model.pt`` and its files), ``RUN_ID:step/output`` (an output of a
recorded run), or ``RUN_ID`` (that run's ``model`` output). Each is mounted read-only at
``/models/<name>``; the image holds the working tree's code (rebuilt first if not). The
container runs in the foreground: Ctrl-C (or SIGTERM) stops and removes it.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.inputs import resolve
from kubesage.store import RunStore

IMAGE = "kubesage/serve"
LABEL = "kubesage.serve"


def model_folder(ref: str, store: RunStore) -> str:
    """The folder of a model reference (folder, ``RUN_ID:step/output`` or ``RUN_ID``)."""
    if not os.path.exists(ref) and ":" not in ref:
        try:
            record = store.get(ref)
        except KeyError:
            raise KubesageError(f"model '{ref}': no such folder and no run '{ref}'; give a model "
                                "folder, RUN_ID:step/output or RUN_ID") from None
        found = [f"{s.name}/model" for s in record.steps if "model" in s.outputs]
        if len(found) != 1:
            raise KubesageError(f"run {record.run_id} has {len(found)} 'model' outputs; name one "
                                f"as {record.run_id}:STEP/OUTPUT")
        ref = f"{record.run_id}:{found[0]}"
    folder = str(resolve("model", ref, store)["path"])
    if not os.path.isfile(os.path.join(folder, "model.pt")):
        raise KubesageError(f"model '{ref}': {folder} holds no model.pt; give the 'model' output "
                            "of a train step")
    return folder


def serve(models: dict[str, str], image: str, port: int, say: Callable[[str], None],
          max_models: int = 8) -> None:
    """Run ``image`` serving ``models`` (name -> folder) on 127.0.0.1:``port`` until stopped."""
    import docker

    client = docker.from_env()
    volumes = {folder: {"bind": f"/models/{name}", "mode": "ro"} for name, folder in models.items()}
    command = [f"--model={name}=/models/{name}" for name in models] + [
        f"--max-models={max_models}"]
    container = client.containers.run(image, command, detach=True, labels={LABEL: "1"},
                                      ports={"8080/tcp": ("127.0.0.1", port)}, volumes=volumes)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, container)
        names = ", ".join(models)
        say(f"serving {names} at {url}: SageMaker GET /ping, POST /invocations"
            + (" (X-Amzn-SageMaker-Target-Model picks a model)" if len(models) > 1 else "")
            + "; KServe v2 POST /v2/models/NAME/infer. Ctrl-C stops it.")
        for line in container.logs(stream=True, follow=True):
            say(line.decode(errors="replace").rstrip())
        container.reload()
        raise KubesageError(f"the serving container ended ({container.status}, exit "
                            f"{container.attrs['State'].get('ExitCode')})")
    finally:
        container.remove(force=True)


def wait_ready(url: str, container: Any, timeout_s: float = 60) -> None:
    """Until ``url``/ping answers 200; fails with the container's last log line if it stops."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        container.reload()
        if container.status == "exited":
            logs = container.logs().decode(errors="replace").strip().splitlines()
            raise KubesageError("the serving container stopped: " + (logs[-1] if logs else "no log"))
        time.sleep(0.3)
    raise KubesageError(f"the serving container did not answer {url}/ping in {timeout_s:.0f}s")
