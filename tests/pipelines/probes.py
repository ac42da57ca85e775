"""Small pipelines of ``probe`` steps used by the runner tests."""

from components.probe import probe
from kubesage import Condition, ParallelFor, component, pipeline


@pipeline(name="failing")
def failing() -> None:
    first = probe(message="first")
    bad = probe(message=first.output, exit_code=3).set_name("bad").set_retries(1)
    probe(message=bad.output).set_name("after-bad")


@pipeline(name="failing-late")
def failing_late() -> None:
    """A step that succeeds, then one that fails (no retries: every target runs it)."""
    first = probe(message="first")
    probe(message=first.output, exit_code=3).set_name("bad")


@pipeline(name="fan-out")
def fan_out(clients: list = ["a", "b", "c"], gate: float = 0.5) -> None:  # noqa: B006
    start = probe(message="start")
    with ParallelFor(clients) as client:
        probe(message=client).set_name("per-client").after(start)
    score = probe(message="0.3").set_name("score")
    with Condition(score.output == "1.0"):
        probe(message="never").set_name("gated")


@pipeline(name="slow")
def slow(seconds: float = 120.0) -> None:
    probe(message="sleeping", seconds=seconds)


@pipeline(name="chain")
def chain(seconds: float = 1.0) -> None:
    previous = probe(message="0", seconds=seconds).set_caching(False)
    for i in range(1, 3):
        previous = probe(message=str(i), seconds=seconds).set_caching(False).after(previous)


@component(image="elsewhere/not-built:1")
def foreign_probe() -> str:
    """A component whose image this project does not build (and nobody built)."""
    return "never"


@pipeline(name="foreign")
def foreign() -> None:
    foreign_probe()


@pipeline(name="fills-the-disk")
def fills_the_disk(megabytes: int = 1) -> None:
    from kubesage.testing.probes import fill

    made = fill(megabytes=megabytes)
    probe(message="after").after(made)


@pipeline(name="identity")
def identity() -> None:
    from kubesage.testing.probes import diag_identity

    diag_identity()
