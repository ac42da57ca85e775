from components.probe import probe
from kubesage import pipeline


@pipeline(name="positional")
def positional() -> None:
    probe("hello")
