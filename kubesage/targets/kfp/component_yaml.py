"""Export a kubesage component as a Kubeflow component YAML, for teams that share those.

The file is what the kfp SDK itself writes for a container component (compiled with
``kfp.compiler.Compiler``), so ``kfp.components.load_component_from_file`` loads it and any KFP
pipeline can call it; the container runs kubesage's entry point in the component's image.
"""

from __future__ import annotations

from kubesage.dsl.interface import ComponentSpec
from kubesage.targets.kfp.compiler import write_compiled
from kubesage.targets.kfp.components import container_component
from kubesage.targets.kfp.config import KfpConfig


def export_component(spec: ComponentSpec, output: str, config: KfpConfig) -> str:
    """Write ``spec`` as a KFP component YAML to ``output`` (atomically)."""
    component = container_component(spec.name, spec, spec.resources, spec.distribution, config)
    return write_compiled(component, output, f"component '{spec.name}'")
