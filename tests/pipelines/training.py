"""Training pipelines for the component tests: resumable single-process, 2 x 2 DDP, and the
same training on 1, 2 and 4 processes (learning-rate scaling). ``image_size`` is preprocess's
(16 by default, as the reference pipeline); the in-process tests pass 8, the digits' own size."""

from components.evaluate import evaluate
from components.preprocess import preprocess
from components.train import train
from kubesage import pipeline


@pipeline(name="train-only")
def train_only(raw_dir: str = "/fsx/digits", epochs: int = 6, checkpoint_every: int = 10,
               image_size: int = 16) -> None:
    prep = preprocess(raw_dir=raw_dir, image_size=image_size)
    train(data=prep.outputs["data"], epochs=epochs, checkpoint_every=checkpoint_every)


@pipeline(name="ddp")
def ddp(raw_dir: str = "/fsx/digits", epochs: int = 8) -> None:
    prep = preprocess(raw_dir=raw_dir)
    trained = train(data=prep.outputs["data"], epochs=epochs, batch_size=16).set_distribution(2, 2)
    evaluate(data=prep.outputs["data"], model=trained.outputs["model"])


def _scaling(nodes: int, procs_per_node: int, raw_dir: str, epochs: int, batch_size: int,
             lr: float, image_size: int) -> None:
    """preprocess -> train on ``nodes`` x ``procs_per_node`` processes -> evaluate."""
    prep = preprocess(raw_dir=raw_dir, image_size=image_size)
    trained = train(data=prep.outputs["data"], epochs=epochs, batch_size=batch_size, lr=lr)
    trained.set_distribution(nodes, procs_per_node)
    evaluate(data=prep.outputs["data"], model=trained.outputs["model"])


@pipeline(name="ranks-1")
def ranks_1(raw_dir: str = "/fsx/digits", epochs: int = 3, batch_size: int = 64,
            lr: float = 0.05, image_size: int = 16) -> None:
    _scaling(1, 1, raw_dir, epochs, batch_size, lr, image_size)


@pipeline(name="ranks-2")
def ranks_2(raw_dir: str = "/fsx/digits", epochs: int = 3, batch_size: int = 64,
            lr: float = 0.05, image_size: int = 16) -> None:
    _scaling(1, 2, raw_dir, epochs, batch_size, lr, image_size)


@pipeline(name="ranks-4")
def ranks_4(raw_dir: str = "/fsx/digits", epochs: int = 3, batch_size: int = 64,
            lr: float = 0.05, image_size: int = 16) -> None:
    """4 processes as 2 nodes x 2, like ``ddp``."""
    _scaling(2, 2, raw_dir, epochs, batch_size, lr, image_size)
