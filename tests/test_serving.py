"""The serving server over real HTTP on loopback: SageMaker's contract and the Open Inference
Protocol v2 give the answers the model gives in-process; bad requests get a 4xx and the server
goes on; several models load lazily into a bounded cache."""

from __future__ import annotations

import base64
import glob
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from components.classifier import Handler, load
from kubesage.serving.models import ModelCache


def _model(folder: str, seed: int, size: int = 16) -> str:
    """A smallcnn in train's model.pt format, with seeded random weights."""
    import torch

    from components.models import build_model

    torch.manual_seed(seed)
    classes = [str(i) for i in range(10)]
    net = build_model("smallcnn", len(classes))
    os.makedirs(folder, exist_ok=True)
    torch.save({"arch": "smallcnn", "state_dict": net.state_dict(), "classes": classes,
                "preprocessing": {"image_size": [size, size], "channels": 3, "layout": "NCHW",
                                  "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                                  "scale": 255}}, os.path.join(folder, "model.pt"))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {name: _model(str(root / name), seed) for seed, name in
            enumerate(("acme", "globex", "initech"))}


@pytest.fixture(scope="module")
def images(fsx_root: str) -> list[bytes]:
    files = [f for d in sorted(glob.glob(os.path.join(fsx_root, "digits", "*")))
             for f in sorted(glob.glob(os.path.join(d, "*.png")))[:4]][:32]  # every class
    return [open(f, "rb").read() for f in files]


class Server:
    """The serving app under uvicorn, in a thread, on a free loopback port."""

    def __init__(self, cache: ModelCache) -> None:
        import uvicorn

        from kubesage.serving.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(cache), host="127.0.0.1",
                                                    port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise AssertionError("the server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def call(self, path: str, body: bytes | None = None, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None
                                         else "GET", headers={"Content-Type": content_type,
                                                              **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture
def server(models: dict[str, str]) -> Iterator[Server]:
    with Server(ModelCache({"acme": models["acme"]}, load)) as s:
        yield s


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_sagemaker_and_oip_answer_as_the_model_does_in_process(server, models, images) -> None:
    import numpy as np

    model = Handler(models["acme"])
    expected = model.predict_arrays(np.stack([model.decode(i) for i in images]))
    assert len({a["score"] for a in expected}) > 1  # answers that depend on the image

    assert server.call("/ping") == (200, {"status": "ok", "models": ["acme"]})
    code, single = server.call("/invocations", images[0], "image/png")
    assert code == 200 and single == {"predictions": [expected[0]]}
    code, batch = server.call("/invocations", json.dumps(
        {"instances": [{"b64": _b64(i)} for i in images]}).encode())
    assert code == 200 and batch["predictions"] == expected

    assert server.call("/v2/health/live") == (200, {"live": True})
    assert server.call("/v2/health/ready") == (200, {"ready": True})
    code, meta = server.call("/v2/models/acme")
    assert code == 200 and meta["inputs"][0]["datatype"] == "BYTES"
    assert meta["parameters"]["classes"] == [str(i) for i in range(10)]
    code, inferred = server.call("/v2/models/acme/infer", json.dumps(
        {"id": "r1", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                 "data": [_b64(i) for i in images]}]}).encode())
    assert code == 200 and inferred["id"] == "r1" and inferred["model_name"] == "acme"
    outputs = {o["name"]: o for o in inferred["outputs"]}
    assert outputs["class"]["data"] == [a["class"] for a in expected]
    assert outputs["score"]["data"] == [a["score"] for a in expected]
    assert [json.loads(t) for t in outputs["top_k"]["data"]] == [a["top_k"] for a in expected]
    assert all(len(a["top_k"]) == 3 and a["top_k"][0] == [a["class"], a["score"]] for a in expected)


@pytest.mark.parametrize(("path", "body", "content_type", "status", "says"), [
    ("/invocations", b"hello", "text/plain", 415, "unsupported content type 'text/plain'"),
    ("/invocations", b"{not json", "application/json", 400, "not valid JSON"),
    ("/invocations", b'{"instances": []}', "application/json", 400, "at least one instance"),
    ("/invocations", b'{"instances": ["***"]}', "application/json", 400, "instances[0]: not valid base64"),
    ("/invocations", b"GIF89a-not-really", "image/png", 400, "not an image this server can decode"),
    ("/v2/models/acme/infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], '
     b'"data": [1.0]}]}', "application/json", 400, "send the images as BYTES"),
    ("/v2/models/acme/infer", b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], '
     b'"data": ["aGk="]}]}', "application/json", 400, "shape [2] does not hold 1 element"),
    ("/v2/models/nobody/infer", b'{"inputs": []}', "application/json", 400, "expected {"),
    ("/v2/models/nobody", None, "application/json", 404, "no model 'nobody'; this server holds: acme"),
    ("/invocations", b'{"b64": "aGk="}\n{oops', "application/jsonlines", 400,
     "line 2 is not valid JSON"),
    ("/invocations", b'{"file": "a"}', "application/jsonlines", 400, 'line 1: expected {"b64"'),
    ("/invocations", b'{"b64": "aGk=", "top_k": 0}', "application/jsonlines", 400,
     "top_k must be a whole number >= 1"),
])
def test_a_bad_request_gets_a_4xx_and_the_server_goes_on(server, images, path, body, content_type,
                                                         status, says) -> None:
    code, answer = server.call(path, body, content_type)
    assert code == status and says in answer["error"], answer
    assert server.call("/invocations", images[0], "image/png")[0] == 200  # still serving


def test_json_lines_answer_one_line_per_instance_with_its_fields(server, models, images) -> None:
    """What a SageMaker batch transform sends (SplitType=Line, MultiRecord): one instance per
    line; each answer line carries the instance's own fields, in order, with any top_k."""
    import numpy as np

    model = Handler(models["acme"])
    arrays = np.stack([model.decode(i) for i in images[:6]])
    lines = [{"file": f"f{i}", "label": str(i % 10), "b64": _b64(data),
              **({"top_k": 5} if i % 2 else {})} for i, data in enumerate(images[:6])]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    request = urllib.request.Request(server.url + "/invocations", data=body, headers={
        "Content-Type": "application/jsonlines", "Accept": "application/jsonlines"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("application/jsonlines")
        answers = [json.loads(t) for t in r.read().decode().splitlines()]
    assert [a["file"] for a in answers] == [line["file"] for line in lines]
    assert [a["label"] for a in answers] == [line["label"] for line in lines]
    assert not any("b64" in a or "top_k" in a and isinstance(a["top_k"], int) for a in answers)
    for i, answer in enumerate(answers):
        expected = model.predict_arrays(arrays[i:i + 1], 5 if i % 2 else None)[0]
        assert {k: answer[k] for k in ("class", "score", "top_k")} == expected
        assert len(answer["top_k"]) == (5 if i % 2 else 3)


def test_several_models_load_lazily_into_a_bounded_cache(models, images) -> None:
    cache = ModelCache(models, load, capacity=2)
    with Server(cache) as server:
        assert cache.loaded() == []  # nothing loaded before it is asked for
        answers = {}
        for name in ("acme", "globex", "initech", "acme"):
            code, answer = server.call("/invocations", images[0], "image/png",
                                       {"X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"})
            assert code == 200
            answers[name] = answer["predictions"][0]
        assert cache.loaded() == ["initech", "acme"] and cache.loads == 4  # acme came back
        assert answers["acme"] == Handler(models["acme"]).predict([images[0]])[0]
        assert answers["acme"] != answers["globex"]  # each client its own model
        code, answer = server.call("/invocations", images[0], "image/png")
        assert code == 404 and "holds 3 models (acme, globex, initech); name one" in answer["error"]


@pytest.mark.docker
def test_kubesage_serve_runs_the_serving_image(models, images, config_file: str) -> None:
    """`kubesage serve` with two client models: the container answers as the models do
    in-process, and Ctrl-C removes it."""
    import signal
    import subprocess
    import sys

    import docker

    from tests.conftest import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubesage.cli", "serve", "--model", f"acme={models['acme']}",
         "--model", f"globex={models['globex']}", "--port", str(port), "--config", config_file],
        cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "serving acme, globex at" not in line:
            line = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        url = f"http://127.0.0.1:{port}"
        for name in ("acme", "globex"):
            request = urllib.request.Request(url + "/invocations", data=images[3], method="POST",
                                             headers={"Content-Type": "image/png",
                                                      "X-Amzn-SageMaker-Target-Model": name})
            with urllib.request.urlopen(request, timeout=60) as r:
                served = json.loads(r.read())["predictions"][0]
            assert served == Handler(models[name]).predict([images[3]])[0]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    assert not docker.from_env().containers.list(all=True, filters={"label": "kubesage.serve"})


def test_the_multi_model_endpoint_contract_loads_and_unloads_models(models, images) -> None:
    """SageMaker's multi-model endpoints start the container with no model and load each
    client's model with POST /models (the model folder as SageMaker unpacked it)."""
    with Server(ModelCache({}, load)) as server:
        assert server.call("/models") == (200, {"models": []})
        for name in ("acme", "globex"):
            code, _ = server.call("/models", json.dumps(
                {"model_name": name, "url": models[name]}).encode())
            assert code == 200
        code, again = server.call("/models", json.dumps(
            {"model_name": "acme", "url": models["acme"]}).encode())
        assert code == 409 and "loaded already" in again["error"]
        assert [m["modelName"] for m in server.call("/models")[1]["models"]] == ["acme", "globex"]
        code, answer = server.call("/models/globex/invoke", images[5], "image/png")
        assert code == 200
        assert answer["predictions"] == Handler(models["globex"]).predict([images[5]])
        assert server.call("/models/globex")[1]["modelUrl"] == models["globex"]
        assert server.call("/models/globex", None)[0] == 200
        request = urllib.request.Request(server.url + "/models/globex", method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
        code, gone = server.call("/models/globex/invoke", images[5], "image/png")
        assert code == 404 and "no model 'globex'" in gone["error"]
        code, bad = server.call("/models", b'{"model_name": "x"}')
        assert code == 400 and "expected" in bad["error"]


def test_a_served_answer_is_the_line_predict_writes(server, models, fsx_root, tmp_path) -> None:
    """The floor of issue 14: the same model and images give the same class, score and top-k
    over HTTP (one image, and a batch) as in predict's predictions.jsonl."""
    from components.predict import PREDICTIONS_FILE, predict_images
    from kubesage import Dataset, Metrics, Model

    folder = os.path.join(fsx_root, "digits")
    (tmp_path / "out" / "m").mkdir(parents=True)
    predict_images(Model(models["acme"]), folder, Dataset(str(tmp_path / "out")),
                   Metrics(str(tmp_path / "out" / "m")))
    with open(tmp_path / "out" / PREDICTIONS_FILE) as f:
        rows = {row["file"]: row for row in map(json.loads, f)}
    files = sorted(rows)[::37]  # every class, spread over the set
    data = [open(os.path.join(folder, name), "rb").read() for name in files]
    code, batch = server.call("/invocations", json.dumps(
        {"instances": [{"b64": _b64(d)} for d in data]}).encode())
    assert code == 200
    for name, one, answer in zip(files, data, batch["predictions"], strict=True):
        line = {k: rows[name][k] for k in ("class", "score", "top_k")}
        assert answer == line, name
        assert server.call("/invocations", one, "image/png")[1]["predictions"][0] == line
