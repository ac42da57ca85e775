"""``python -m kubesage.serving --model NAME=FOLDER ... [--port 8080]``: the serving image's
entry point (SageMaker starts it with the argument ``serve``, which is accepted and ignored)."""

from __future__ import annotations

import argparse
import os
import sys

from kubesage.serving import HANDLER_ENV, MODEL_PATH_ENV


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubesage.serving")
    p.add_argument("serve", nargs="?", help="SageMaker's argument to the container (ignored)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                   help="a model folder to serve under NAME (default: every folder of "
                        "/opt/ml/model, SageMaker's, or /opt/ml/model itself)")
    p.add_argument("--handler", default=os.environ.get(HANDLER_ENV,
                                                       "components.classifier:load"))
    p.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", 8080)))
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--max-models", type=int, default=int(os.environ.get("KUBESAGE_MAX_MODELS", 8)))
    args = p.parse_args(argv)

    import uvicorn

    from kubesage.serving.app import create_app
    from kubesage.serving.models import ModelCache, handler_factory

    # a multi-model endpoint starts with none: SageMaker loads them through POST /models
    folders = dict(m.split("=", 1) for m in args.model) if args.model else _sagemaker_models()
    app = create_app(ModelCache(folders, handler_factory(args.handler), args.max_models))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _sagemaker_models(root: str = "/opt/ml/model") -> dict[str, str]:
    """SageMaker puts a model's ``model.tar.gz`` unpacked in ``/opt/ml/model``; a multi-model
    endpoint's models each in a folder of their own. A training job's archive holds a folder
    per output: ``KUBESAGE_MODEL_PATH`` names the model's."""
    if os.environ.get(MODEL_PATH_ENV):
        return {"default": os.path.join(root, os.environ[MODEL_PATH_ENV])}
    if not os.path.isdir(root):
        return {}
    subfolders = sorted(d for d in os.listdir(root)
                        if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if subfolders and not os.path.exists(os.path.join(root, "model.pt")):
        return {d: os.path.join(root, d) for d in subfolders}
    return {"default": root}


if __name__ == "__main__":
    sys.exit(main())
