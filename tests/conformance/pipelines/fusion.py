"""Steps that fusion runs in one job on the cloud targets (``kubesage.plan.fusion``), each still
its own step: a producer with two followers, the last one's returned value deciding a condition
(on SageMaker a training job whose follower reports it as a metric); a chain inside the
condition's branch, passing a returned value; a chain per item of a literal fan-out."""

from kubesage import Condition, ParallelFor, pipeline
from kubesage.testing.probes import (
    diag_add,
    diag_make_artifacts,
    diag_note,
    diag_read_artifacts,
    diag_score,
    diag_shout,
)


@pipeline(name="conformance-fusion")
def fusion(rows: int = 3, threshold: float = 0.5) -> None:
    made = diag_make_artifacts(rows=rows)
    checked = diag_read_artifacts(artifact=made.outputs["artifact"], dataset=made.outputs["dataset"],
                                  model=made.outputs["model"], metrics=made.outputs["metrics"],
                                  rows=rows)
    score = diag_score(value=0.75).after(checked)
    with Condition(score.output >= threshold):
        first = diag_add(value=rows, amount=1).set_name("first")
        diag_add(value=first.output, amount=2).set_name("second")
    with ParallelFor(["red", "green"]) as colour:
        shout = diag_shout(word=colour)
        diag_note(message=shout.output)
