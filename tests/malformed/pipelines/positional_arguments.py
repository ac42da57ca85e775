from components.diagnostics import probe
from kubesage import pipeline


@pipeline(name="positional")
def positional() -> None:
    probe("hello")
