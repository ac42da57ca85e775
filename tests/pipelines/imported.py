"""Kubeflow component YAML imported into a kubesage pipeline, beside kubesage components."""

import os

from components.probe import probe
from kubesage import Condition, load_kfp_component, pipeline

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kfp_components")
make_text = load_kfp_component(os.path.join(HERE, "make_text.yaml"), version="1.0.0")
upper = load_kfp_component(os.path.join(HERE, "upper.yaml"), version="2.1.0")


@pipeline(name="imported")
def imported(text: str = "hello kubesage", repeat: int = 2) -> None:
    made = make_text(text=text, repeat=repeat)
    shouted = upper(text=made.outputs["out"], suffix="!")
    probe(message=shouted.outputs["head"]).set_name("report")
    with Condition(shouted.outputs["size"] > 10):
        probe(message="long").set_name("long")


@pipeline(name="imported-artifacts")
def imported_artifacts(text: str = "hello kubesage", repeat: int = 2) -> None:
    """Imported components only passing artifacts: what SageMaker can run of them as well."""
    made = make_text(text=text, repeat=repeat)
    upper(text=made.outputs["out"], shout=True)  # suffix: its default
