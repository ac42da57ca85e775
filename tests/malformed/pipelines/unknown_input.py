from components.probe import probe
from kubesage import pipeline


@pipeline(name="unknown-input")
def unknown_input() -> None:
    probe(mesage="x")
