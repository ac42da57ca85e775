"""The serving server over real HTTP on loopback: SageMaker's contract and the Open Inference
Protocol v2 give the answers the model gives in-process; bad requests get a 4xx and the server
goes on; several models load lazily into a bounded cache."""

from __future__ import annotations

import base64
import glob
import json
import os
import socket
import struct
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
        _triton_infer_in_the_container(url, models["globex"], images[3:6])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    served = docker.from_env().containers.list(all=True, filters={"label": "kubesage.serve"})
    ports = {c.name: [b["HostPort"] for b in c.attrs["HostConfig"]["PortBindings"]["8080/tcp"]]
             for c in served}
    assert not [name for name, bound in ports.items() if str(port) in bound]  # this test's


def _triton_infer_in_the_container(url: str, model: str, images: list[bytes]) -> None:
    """tritonclient against the serving image: the images as BYTES binary data, one output
    asked for as binary data and two as JSON, answered as the model does in-process."""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    image = triton.InferInput("image", [len(images)], "BYTES")
    image.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    result = client.infer("globex", [image], outputs=[
        triton.InferRequestedOutput("class", binary_data=False),
        triton.InferRequestedOutput("score", binary_data=True),
        triton.InferRequestedOutput("top_k", binary_data=False)])
    assert "binary_data_size" in result.get_output("score")["parameters"]
    assert _triton_answers(result) == _as_fp32(Handler(model).predict(images))
    client.close()


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


# -- the binary tensor data extension, through a client library of the protocol ----------------

def _triton_answers(result: Any) -> list[dict[str, Any]]:
    """A tritonclient result's outputs as the server's answers (BYTES elements as text)."""
    classes, scores, top = (result.as_numpy(n) for n in ("class", "score", "top_k"))
    text = [[x.decode() if isinstance(x, bytes) else x for x in a.tolist()] for a in (classes, top)]
    return [{"class": c, "score": s, "top_k": json.loads(t)}
            for c, s, t in zip(text[0], scores.tolist(), text[1], strict=True)]


def _as_fp32(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers with the score as an FP32 output carries it."""
    import numpy as np

    return [{**a, "score": float(np.float32(a["score"]))} for a in answers]


def test_tritonclient_binary_tensors_answer_as_the_json_path(server, models, images) -> None:
    """tritonclient (a real Open Inference Protocol client) sends the images as BYTES binary
    data and asks for outputs as binary and as JSON: the answers are the JSON path's."""
    import numpy as np
    import tritonclient.http as triton

    code, plain = server.call("/v2/models/acme/infer", json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                     "data": [_b64(i) for i in images]}]}).encode())
    assert code == 200
    by_json = [{"class": c, "score": s, "top_k": json.loads(t)} for c, s, t in zip(
        *({o["name"]: o["data"] for o in plain["outputs"]}[n] for n in ("class", "score", "top_k")),
        strict=True)]
    assert by_json == Handler(models["acme"]).predict(images)

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    image = triton.InferInput("image", [len(images)], "BYTES")
    image.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    for binary in ({"class": True, "score": False, "top_k": True},
                   {"class": False, "score": True, "top_k": False},
                   {"class": False, "score": False, "top_k": False}):
        asked = [triton.InferRequestedOutput(n, binary_data=b) for n, b in binary.items()]
        result = client.infer("acme", [image], outputs=asked, request_id="r7")
        sent = {o["name"]: o for o in result.get_response()["outputs"]}
        for name, as_binary in binary.items():  # each output as it was asked for
            assert ("data" not in sent[name]) == as_binary, sent[name]
            assert ("binary_data_size" in sent[name].get("parameters", {})) == as_binary
        assert result.get_response()["id"] == "r7"
        assert _triton_answers(result) == _as_fp32(by_json)
    everything = client.infer("acme", [image])  # no outputs named: binary_data_output
    assert all("data" not in o for o in everything.get_response()["outputs"])
    assert _triton_answers(everything) == _as_fp32(by_json)

    as_text = triton.InferInput("image", [2], "BYTES")  # the JSON path, from the client too
    as_text.set_data_from_numpy(np.array([_b64(i) for i in images[:2]], dtype=np.object_),
                                binary_data=False)
    assert _triton_answers(client.infer("acme", [as_text])) == _as_fp32(by_json[:2])
    client.close()


def test_binary_and_json_inputs_mix_in_one_request(server, models, images) -> None:
    """The images as binary data beside a JSON top_k input (and the other way round) answer as
    the model does with that top_k."""
    import numpy as np
    import tritonclient.http as triton

    expected = _as_fp32(Handler(models["acme"]).predict(images[:5], top_k=5))
    assert all(len(a["top_k"]) == 5 for a in expected)
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    for image_binary, top_k_binary in ((True, False), (False, True)):
        image = triton.InferInput("image", [5], "BYTES")
        data = images[:5] if image_binary else [_b64(i) for i in images[:5]]
        image.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=image_binary)
        top_k = triton.InferInput("top_k", [1], "INT64")
        top_k.set_data_from_numpy(np.array([5], dtype=np.int64), binary_data=top_k_binary)
        assert _triton_answers(client.infer("acme", [top_k, image])) == expected
    client.close()


def _binary_body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), {"Inference-Header-Content-Length": str(len(text))}


def _bytes_tensor(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_a_binary_answer_is_the_json_header_then_the_tensors(server, models, images) -> None:
    """The wire format itself, read without a client library: the JSON object's length in
    Inference-Header-Content-Length, application/octet-stream, then each binary output's
    bytes in output order (BYTES length-prefixed, FP32 little-endian)."""
    raw = _bytes_tensor(images[0], images[1])
    body, headers = _binary_body({"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size":
                                                                         len(raw)}}],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}}, {"name": "class"}]},
        raw)
    request = urllib.request.Request(server.url + "/v2/models/acme/infer", data=body,
                                     headers={"Content-Type": "application/octet-stream", **headers})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.headers["Content-Type"] == "application/octet-stream"
        n = int(r.headers["Inference-Header-Content-Length"])
        answer = r.read()
    head = json.loads(answer[:n])
    expected = Handler(models["acme"]).predict(images[:2])
    assert [o["name"] for o in head["outputs"]] == ["score", "class"]  # as asked, no top_k
    score, klass = head["outputs"]
    assert score["parameters"] == {"binary_data_size": 8} and "data" not in score
    assert len(answer) == n + 8
    assert list(struct.unpack("<2f", answer[n:])) == [
        _as_fp32(expected)[i]["score"] for i in range(2)]
    assert klass["data"] == [a["class"] for a in expected] and "parameters" not in klass


_IMAGE = {"name": "image", "datatype": "BYTES", "shape": [1]}


@pytest.mark.parametrize(("header", "chunks", "length", "says"), [
    ({"inputs": [_IMAGE]}, [b"xx"], "9999", "Inference-Header-Content-Length is 9999, but the "
     "body holds"),
    ({"inputs": [_IMAGE]}, [], "twelve", "'twelve' is not a whole number of bytes"),
    ({"inputs": [_IMAGE]}, [], "5", "the JSON header (the body's first 5 bytes) is not valid JSON"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 7}}]}, [_bytes_tensor(b"abc"),
                                                                       b"extra"], None,
     "5 bytes follow the JSON header beyond the inputs' binary_data_size (7 of 12 bytes)"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 64}}]}, [_bytes_tensor(b"abc")],
     None, "binary_data_size 64 runs past the body's end (7 bytes of binary data left)"),
    ({"inputs": [{**_IMAGE, "shape": [2], "parameters": {"binary_data_size": 7}}]},
     [_bytes_tensor(b"abc")], None, "shape [2] needs 2 BYTES element(s), the binary data holds 1"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 6}}]},
     [struct.pack("<I", 1000) + b"ab"], None, "BYTES element 0 declares 1000 bytes, but 2 are left"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 2}}]}, [b"ab"], None,
     "BYTES element 0 has a cut-off length (2 of 4 bytes)"),
    ({"inputs": [{**_IMAGE, "data": ["aGk="]}, {"name": "top_k", "datatype": "INT32", "shape": [1],
                          "parameters": {"binary_data_size": 3}}]}, [b"\x05\x00\x00"], None,
     "input 'top_k': 3 bytes of INT32 do not make shape [1] (1 x 4 = 4 bytes)"),
    ({"inputs": [{**_IMAGE, "datatype": "FP8", "parameters": {"binary_data_size": 1}}]}, [b"x"],
     None, "unknown datatype 'FP8'"),
    ({"inputs": [{**_IMAGE, "data": ["aGk="], "parameters": {"binary_data_size": 7}}]},
     [_bytes_tensor(b"abc")], None, "has both JSON data and binary_data_size"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": "7"}}]}, [_bytes_tensor(b"abc")],
     None, "binary_data_size must be a whole number >= 0, not '7'"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 7}}],
      "outputs": [{"name": "class", "parameters": {"binary_data": "yes"}}]},
     [_bytes_tensor(b"abc")], None, "output 'class': binary_data must be true or false"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 7}}], "outputs": [{"name": "x"}]},
     [_bytes_tensor(b"abc")], None, "no output 'x'; this model answers class, score, top_k"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 7}}],
      "outputs": [{"name": "score", "parameters": {"classification": 3}}]},
     [_bytes_tensor(b"abc")], None, "output 'score': this server has no classification extension"),
    ({"inputs": [{**_IMAGE, "parameters": {"shared_memory_region": "r0"}}]}, [], None,
     "input 'image': this server has no shared memory extension"),
    ({"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 7}}]}, [_bytes_tensor(b"abc")],
     None, "not an image this server can decode"),
])
def test_a_malformed_binary_request_gets_a_400_naming_the_problem(
        server, images, header, chunks, length, says) -> None:
    body, headers = _binary_body(header, *chunks)
    if length is not None:
        headers["Inference-Header-Content-Length"] = length
    code, answer = server.call("/v2/models/acme/infer", body, "application/octet-stream", headers)
    assert code == 400 and says in answer["error"], answer
    assert server.call("/invocations", images[0], "image/png")[0] == 200  # still serving


def test_binary_data_size_without_the_header_is_named(server) -> None:
    """A binary input in a request without Inference-Header-Content-Length: the whole body is
    then JSON, and the answer says the header is missing."""
    code, answer = server.call("/v2/models/acme/infer", json.dumps(
        {"inputs": [{**_IMAGE, "parameters": {"binary_data_size": 7}}]}).encode())
    assert code == 400 and "no Inference-Header-Content-Length header" in answer["error"], answer
