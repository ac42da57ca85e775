"""One model per client: a fan-out over client folders on the shared file system.

Each client's images sit in ``/fsx/clients/<client>/<class>/``; each client gets its own
preprocess, training and evaluation, and its model is registered as ``digits-<client>`` when it
passes the bar (an MLflow registered model per client locally; a model package group per client
on SageMaker, where submission starts one execution per client).
"""

from components.evaluate import evaluate
from components.preprocess import preprocess
from components.register import register
from components.train import train
from kubesage import Condition, ParallelFor, pipeline


@pipeline(name="per-client")
def per_client(
    clients: list = ["client-a", "client-b", "client-c"],  # noqa: B006
    raw_dir: str = "/fsx/clients",
    epochs: int = 8,
    threshold: float = 0.85,
    model_name: str = "digits",
) -> None:
    """Train, evaluate and register one classifier per client."""
    with ParallelFor(clients) as client:
        prep = preprocess(raw_dir=raw_dir, subdir=client)
        trained = train(data=prep.outputs["data"], epochs=epochs)
        scored = evaluate(data=prep.outputs["data"], model=trained.outputs["model"])
        with Condition(scored.output >= threshold):
            register(model=trained.outputs["model"], model_name=model_name, variant=client,
                     accuracy=scored.output)
