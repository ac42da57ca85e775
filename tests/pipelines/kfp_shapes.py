"""Pipelines that exercise the Kubeflow compiler: fan-out per client, multi-node training."""

from components.evaluate import evaluate
from components.preprocess import preprocess
from components.probe import probe
from components.register import register
from components.train import train
from kubesage import Condition, ParallelFor, pipeline


@pipeline(name="per-client")
def per_client(clients: list = ["acme", "globex"], epochs: int = 2) -> None:  # noqa: B006
    """One model per client: the loop body trains, scores and registers each client's model."""
    prep = preprocess(raw_dir="/fsx/digits")
    with ParallelFor(clients, parallelism=2) as client:
        tag = probe(message=client).set_name("client-tag")
        trained = train(data=prep.outputs["data"], epochs=epochs).after(tag)
        scored = evaluate(data=prep.outputs["data"], model=trained.outputs["model"])
        with Condition(scored.output >= 0.5):
            register(model=trained.outputs["model"], model_name=client, accuracy=scored.output)


@pipeline(name="multi-node")
def multi_node(epochs: int = 2) -> None:
    """Train on 2 nodes x 4 GPUs (train wants one per process) through a TrainJob; preprocess
    retried, never cached."""
    prep = preprocess(raw_dir="/fsx/digits").set_retries(2).set_caching(False)
    trained = (train(data=prep.outputs["data"], epochs=epochs)
               .set_distribution(nodes=2, procs_per_node=4))
    evaluate(data=prep.outputs["data"], model=trained.outputs["model"])
