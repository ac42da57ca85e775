"""The HTTP routes: SageMaker's inference contract and KServe's Open Inference Protocol v2.

Payloads:
- ``POST /invocations``: an image file (``image/png``, ``image/jpeg``,
  ``application/x-image``, ``application/octet-stream``) answers
  ``{"predictions": [one]}``; ``application/json`` ``{"instances": [{"b64": ...}, ...]}`` (or a
  list of base64 strings) answers one prediction per instance;
  ``application/jsonlines`` (what a SageMaker batch transform sends with ``SplitType=Line``):
  one instance per line, ``{"b64": ..., "top_k"?: N, ...}``, answers one line per instance, in
  order, carrying the instance's other fields (``file``, ``label``, ...) beside the prediction.
- ``POST /models`` ``{"model_name", "url"}``, ``GET /models[/{name}]``, ``DELETE
  /models/{name}``, ``POST /models/{name}/invoke``: the multi-model endpoint contract, by which
  SageMaker itself loads and unloads each client's model;
- ``POST /v2/models/{name}/infer``: one ``BYTES`` input of shape ``[N]`` whose data are the
  images (base64 in JSON, or the files' bytes with the binary tensor data extension) and an
  optional ``top_k`` input; outputs ``class`` (BYTES), ``score`` (FP32) and ``top_k`` (BYTES,
  each a JSON list of ``[class, score]``), in JSON or as binary data (``oip``).
A bad request gets a 4xx with ``{"error": message}``, and the server goes on serving.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from kubesage import __version__
from kubesage.serving import JSON_LINES
from kubesage.serving.models import BadInput, ModelCache, UnknownModel
from kubesage.serving.oip import HEADER_LENGTH, b64_image, infer_answer, infer_request, parse_json

IMAGE_TYPES = ("image/png", "image/jpeg", "application/x-image", "application/octet-stream")
TARGET_MODEL = "x-amzn-sagemaker-target-model"  # SageMaker multi-model endpoints


def sagemaker_payloads(content_type: str, body: bytes) -> tuple[list[bytes], bool]:
    """(encoded images, whether the request was a batch) of an ``/invocations`` request."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        if not body:
            raise BadInput("the body is empty; send an image file's bytes")
        return [body], False
    if kind != "application/json":
        raise BadInput(f"unsupported content type '{kind or '(none)'}'; send an image "
                       f"({', '.join(IMAGE_TYPES)}), application/json "
                       '{"instances": [{"b64": ...}]} or application/jsonlines')
    doc = parse_json(body)
    instances = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(instances, list) or not instances:
        raise BadInput('expected {"instances": [{"b64": ...}, ...]} with at least one instance')
    return [b64_image(item, f"instances[{i}]") for i, item in enumerate(instances)], True


def is_json_lines(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in JSON_LINES


def json_lines_answer(handler: Any, body: bytes) -> Response:
    """One answer line per instance line, in order: the instance's fields but ``b64`` and
    ``top_k``, then the prediction. Lines asking different ``top_k`` are predicted apart."""
    instances = []
    for n, text in enumerate(body.splitlines(), 1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"line {n} is not valid JSON ({e})") from None
        if not isinstance(doc, dict) or "b64" not in doc:
            raise BadInput(f'line {n}: expected {{"b64": <base64 image>, ...}}')
        top_k = doc.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise BadInput(f"line {n}: top_k must be a whole number >= 1, not {top_k!r}")
        instances.append((doc, b64_image(doc["b64"], f"line {n}"), top_k))
    if not instances:
        raise BadInput("the body has no lines; send one JSON instance per line")
    answers: list[Any] = [None] * len(instances)
    for top_k in sorted({k for _, _, k in instances}, key=lambda k: k or 0):
        picked = [i for i, (_, _, k) in enumerate(instances) if k == top_k]
        options = {"top_k": top_k} if top_k is not None else {}
        for i, answer in zip(picked, handler.predict([instances[i][1] for i in picked],
                                                     **options), strict=True):
            answers[i] = answer
    lines = []
    for (doc, _, _), answer in zip(instances, answers, strict=True):
        extra = {k: v for k, v in doc.items() if k not in ("b64", "top_k")}
        lines.append(json.dumps({**extra, **answer}, separators=(",", ":")))
    return Response("\n".join(lines) + "\n", media_type="application/jsonlines")


def _answer(doc: dict[str, Any]) -> Response:
    """An answer serialized once, straight to JSON (plain lists and numbers: FastAPI's generic
    encoder would walk every value again)."""
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


def create_app(models: ModelCache) -> FastAPI:
    """The FastAPI application serving ``models``."""
    app = FastAPI(title="kubesage serving", version=__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, e: BadInput) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=415 if "content type" in str(e) else 400)

    @app.exception_handler(UnknownModel)
    async def unknown_model(_: Request, e: UnknownModel) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=404)

    _sagemaker_routes(app, models)
    _multi_model_routes(app, models)
    _v2_routes(app, models)
    return app


def _sagemaker_routes(app: FastAPI, models: ModelCache) -> None:
    """SageMaker's inference contract: ``/ping`` and ``/invocations``."""

    @app.get("/ping")
    def ping() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(models.folders)}

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        body = await request.body()
        target = request.headers.get(TARGET_MODEL)
        name = target.removesuffix(".tar.gz") if target else models.default
        content_type = request.headers.get("content-type", "")
        if is_json_lines(content_type):
            return json_lines_answer(models.get(name), body)
        payloads, _ = sagemaker_payloads(content_type, body)
        return _answer({"predictions": models.get(name).predict(payloads)})



def _multi_model_routes(app: FastAPI, models: ModelCache) -> None:
    """SageMaker multi-model endpoints: the service loads, lists, invokes and unloads models."""

    @app.post("/models")
    async def load_model(request: Request) -> JSONResponse:
        doc = parse_json(await request.body())
        if not isinstance(doc, dict) or not doc.get("model_name") or not doc.get("url"):
            raise BadInput('expected {"model_name": NAME, "url": FOLDER}')
        if not models.add(str(doc["model_name"]), str(doc["url"])):
            return JSONResponse({"error": f"model '{doc['model_name']}' is loaded already"},
                                status_code=409)
        return JSONResponse({"status": f"model '{doc['model_name']}' loaded"})

    @app.get("/models")
    def list_models() -> dict[str, Any]:
        return {"models": [{"modelName": n, "modelUrl": u} for n, u in sorted(models.folders.items())]}

    @app.get("/models/{name}")
    def describe_model(name: str) -> dict[str, Any]:
        if name not in models.folders:
            raise UnknownModel(f"no model '{name}' is loaded")
        return {"modelName": name, "modelUrl": models.folders[name]}

    @app.delete("/models/{name}")
    def unload_model(name: str) -> dict[str, Any]:
        models.remove(name)
        return {"status": f"model '{name}' unloaded"}

    @app.post("/models/{name}/invoke")
    async def invoke(name: str, request: Request) -> Response:
        body, content_type = await request.body(), request.headers.get("content-type", "")
        if is_json_lines(content_type):
            return json_lines_answer(models.get(name), body)
        payloads, _ = sagemaker_payloads(content_type, body)
        return _answer({"predictions": models.get(name).predict(payloads)})



def _v2_routes(app: FastAPI, models: ModelCache) -> None:
    """The Open Inference Protocol v2 (KServe), with the binary tensor data extension."""

    @app.get("/v2")
    def server_metadata() -> dict[str, Any]:
        return {"name": "kubesage", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, Any]:
        return {"ready": True}

    @app.get("/v2/models/{name}")
    def model_metadata(name: str) -> dict[str, Any]:
        return {"name": name, "versions": [], "platform": "pytorch",
                **models.get(name).metadata()}

    @app.get("/v2/models/{name}/ready")
    def model_ready(name: str) -> dict[str, Any]:
        models.get(name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        asked = infer_request(await request.body(), request.headers.get(HEADER_LENGTH))
        answers = models.get(name).predict(asked.images, **asked.options)
        body, headers = infer_answer(name, answers, asked)
        return Response(body, headers=headers)
