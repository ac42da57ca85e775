"""Export a kubesage component as a Kubeflow component YAML, for teams that share those.

The file is what the kfp SDK itself writes for a container component (compiled with
``kfp.compiler.Compiler``), so ``kfp.components.load_component_from_file`` loads it and any KFP
pipeline can call it; the container runs kubesage's entry point in the component's image.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from kubesage.dsl.interface import ComponentSpec
from kubesage.targets.kfp.compiler import KfpCompileError
from kubesage.targets.kfp.components import container_component
from kubesage.targets.kfp.config import KfpConfig


def export_component(spec: ComponentSpec, output: str, config: KfpConfig) -> str:
    """Write ``spec`` as a KFP component YAML to ``output`` (atomically)."""
    from kfp import compiler

    component = container_component(spec.name, spec, spec.resources, spec.distribution, config)
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kubesage-", suffix=".yaml", dir=folder)
    os.close(fd)
    try:
        compiler.Compiler().compile(component, tmp)
        os.replace(tmp, output)
    except Exception as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise KfpCompileError(f"component '{spec.name}' cannot be exported for Kubeflow: {e}") from None
    return output
