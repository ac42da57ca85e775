"""One model per client: a fan-out over client folders on the shared file system.

Each client's images sit in ``/fsx/clients/<client>/<class>/``; each client gets its own
preprocess, training and evaluation, and its model is registered as ``digits-<client>`` when it
passes the bar (an MLflow registered model per client locally; a model package group per client
on SageMaker, where submission starts one execution per client), then predicts that client's
validation split.
"""

from components.evaluate import evaluate
from components.predict import predict
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
    """Train, evaluate and register one classifier per client; predict with each."""
    with ParallelFor(clients) as client:
        prep = preprocess(raw_dir=raw_dir, subdir=client)
        trained = train(data=prep.outputs["data"], epochs=epochs)
        scored = evaluate(data=prep.outputs["data"], model=trained.outputs["model"])
        with Condition(scored.output >= threshold):
            registered = register(model=trained.outputs["model"], model_name=model_name,
                                  variant=client, accuracy=scored.output)
            predict(model=trained.outputs["model"], data=prep.outputs["data"]).after(registered)
