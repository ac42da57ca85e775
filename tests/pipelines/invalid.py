"""A pipeline with a mistake: a Dataset input fed by a Model output."""

from components.evaluate import evaluate
from components.preprocess import preprocess
from components.train import train
from kubesage import pipeline


@pipeline(name="invalid")
def invalid() -> None:
    data = preprocess(raw_dir="/fsx/digits")
    model = train(data=data.outputs["data"])
    evaluate(data=model.outputs["model"], model=model.outputs["model"])
