"""Imported Kubeflow container components (v2 and v1 YAML) feeding a kubesage step."""

import os

from kubesage import load_kfp_component, pipeline
from kubesage.testing.probes import diag_read_text

YAML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "kfp_components")
make_text = load_kfp_component(os.path.join(YAML, "make_text.yaml"), version="1.0.0")
upper = load_kfp_component(os.path.join(YAML, "upper.yaml"), version="2.1.0")


@pipeline(name="conformance-imported-component")
def imported_component(text: str = "conformance check", repeat: int = 2) -> None:
    made = make_text(text=text, repeat=repeat)
    shouted = upper(text=made.outputs["out"], shout=True)
    diag_read_text(text=shouted.outputs["upper"])
