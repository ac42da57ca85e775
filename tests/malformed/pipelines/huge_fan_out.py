from components.probe import probe
from kubesage import ParallelFor, pipeline


@pipeline(name="huge")
def huge() -> None:
    with ParallelFor([str(i) for i in range(100_000)]) as item:
        probe(message=item)
