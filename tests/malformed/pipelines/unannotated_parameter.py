from components.probe import probe
from kubesage import pipeline


@pipeline(name="unannotated")
def unannotated(message="hi") -> None:  # type: ignore[no-untyped-def]
    probe(message=message)
