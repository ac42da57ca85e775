from components.probe import probe
from kubesage import pipeline


@pipeline(name="wrong-type")
def wrong_type() -> None:
    probe(message="x", seconds="soon")
