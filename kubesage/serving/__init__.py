"""Serving: one HTTP server for the models a pipeline trains, in two conventions.

- SageMaker's inference container contract: ``GET /ping``, ``POST /invocations`` on port 8080
  (a multi-model endpoint names the model in ``X-Amzn-SageMaker-Target-Model``);
- KServe's Open Inference Protocol v2: ``/v2/health/{live,ready}``, ``/v2/models/{name}``,
  ``/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``.

The server knows no model format: a *handler* does (``models.Handler``; the component library's
image classifier is ``components.classifier:load``). Several models, each under its own name
(one per client), load lazily into a bounded cache (``models.ModelCache``). Built on FastAPI
and uvicorn, which the serving image installs; the rest of kubesage never imports them.
"""

HANDLER_ENV = "KUBESAGE_HANDLER"  # the handler the image loads models with (``module:function``)
MODEL_PATH_ENV = "KUBESAGE_MODEL_PATH"  # the model's folder inside /opt/ml/model, if not itself
JSON_LINES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
