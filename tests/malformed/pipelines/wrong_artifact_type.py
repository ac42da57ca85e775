from components.evaluate import evaluate
from components.preprocess import preprocess
from components.train import train
from kubesage import pipeline


@pipeline(name="wrong-artifact")
def wrong_artifact() -> None:
    prep = preprocess(raw_dir="/fsx/digits")
    trained = train(data=prep.outputs["data"])
    evaluate(data=trained.outputs["model"], model=trained.outputs["model"])
