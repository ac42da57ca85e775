from components.probe import probe
from kubesage import Condition, pipeline


@pipeline(name="compares-artifact")
def compares_artifact() -> None:
    made = probe()
    with Condition(made.outputs["result"] == "ok"):
        probe()
