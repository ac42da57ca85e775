from components.train import train
from kubesage import pipeline


@pipeline(name="missing-input")
def missing_input() -> None:
    train(epochs=2)
