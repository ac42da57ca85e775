from components.probe import probe
from kubesage import pipeline


@pipeline(name="first")
def first() -> None:
    probe()


@pipeline(name="second")
def second() -> None:
    probe()
