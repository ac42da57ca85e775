"""Pipelines for the SageMaker target tests: fan-out per client, multi-node training."""

from components.evaluate import evaluate
from components.preprocess import preprocess
from components.probe import probe
from components.train import train
from kubesage import ParallelFor, pipeline


@pipeline(name="clients-probe")
def per_client(clients: list = ["acme", "globex"], greeting: str = "hello") -> None:  # noqa: B006
    start = probe(message=greeting)
    with ParallelFor(clients) as client:
        probe(message=client).set_name("per-client").after(start)


@pipeline(name="multi-node")
def multi_node(raw_dir: str = "/fsx/digits", epochs: int = 2) -> None:
    prep = preprocess(raw_dir=raw_dir)
    trained = train(data=prep.outputs["data"], epochs=epochs, batch_size=32).set_distribution(2)
    evaluate(data=prep.outputs["data"], model=trained.outputs["model"])


@pipeline(name="resumable")
def resumable(raw_dir: str = "/fsx/digits", epochs: int = 4, checkpoint_every: int = 5) -> None:
    prep = preprocess(raw_dir=raw_dir)
    train(data=prep.outputs["data"], epochs=epochs, checkpoint_every=checkpoint_every)


@pipeline(name="unrolled")
def unrolled() -> None:
    with ParallelFor(["red", "green"]) as colour:
        probe(message=colour)
