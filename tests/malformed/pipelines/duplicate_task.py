from components.probe import probe
from kubesage import pipeline


@pipeline(name="duplicate")
def duplicate() -> None:
    probe(message="a").set_name("step")
    probe(message="b").set_name("step")
