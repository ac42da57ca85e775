"""Training pipelines for the component tests: resumable single-process and 2 x 2 DDP."""

from components.evaluate import evaluate
from components.preprocess import preprocess
from components.train import train
from kubesage import pipeline


@pipeline(name="train-only")
def train_only(raw_dir: str = "/fsx/digits", epochs: int = 6, checkpoint_every: int = 10) -> None:
    prep = preprocess(raw_dir=raw_dir)
    train(data=prep.outputs["data"], epochs=epochs, checkpoint_every=checkpoint_every)


@pipeline(name="ddp")
def ddp(raw_dir: str = "/fsx/digits", epochs: int = 8) -> None:
    prep = preprocess(raw_dir=raw_dir)
    trained = train(data=prep.outputs["data"], epochs=epochs, batch_size=16).set_distribution(2, 2)
    evaluate(data=prep.outputs["data"], model=trained.outputs["model"])
