from components.probe import probe
from kubesage import pipeline


@pipeline(name="reserved")
def reserved() -> None:
    probe().set_name("condition-1")
