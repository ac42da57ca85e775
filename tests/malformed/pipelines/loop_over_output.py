from components.probe import probe
from kubesage import ParallelFor, component, pipeline


@component
def items() -> list:
    return ["a", "b"]


@pipeline(name="loop-over-output")
def loop_over_output() -> None:
    made = items()
    with ParallelFor(made.output) as item:
        probe(message=item)
