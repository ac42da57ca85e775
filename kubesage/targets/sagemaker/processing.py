"""Processing steps: a kubesage component run by the processing contract, or a container
component (imported Kubeflow YAML) running its own image and command line.

Input artifacts arrive under ``/opt/ml/processing/input/<name>`` (with the producing step's
result output at ``<name>-metadata`` for their metadata); outputs are uploaded from
``/opt/ml/processing/output/<name>``; returns, metrics and metadata go to the result output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubesage.dsl.channel import TaskOutput
from kubesage.runtime.context import STEP_ENV
from kubesage.runtime.sagemaker_processing import ENTRYPOINT as PROCESSING_ENTRYPOINT
from kubesage.runtime.sagemaker_processing import (
    METADATA_SUFFIX,
    PROCESSING,
    RESULT_OUTPUT,
)
from kubesage.targets.sagemaker.limits import gpu_env
from kubesage.targets.sagemaker.parameters import as_string

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.compiler import Compiler, Instance


def processing(c: Compiler, inst: Instance, *, part: str = "", env: dict[str, Any] | None = None,
               only: set[str] | None = None,
               extra: dict[str, tuple[Any, str]] | None = None) -> Any:
    """The processing step of a kubesage component. ``part`` names one step of several the task
    compiles to (``predict-requests``; its outputs under ``.../predict/requests/``), with
    ``env`` added, only the input artifacts ``only`` (and no data mounts) when given, and the
    ``extra`` inputs (name -> (S3 URI, local path)) the runtime does not bind."""
    spec = inst.task.spec
    if spec.container is not None:
        return container_processing(c, inst)
    params, artifacts = c.arguments(inst)
    if only is not None:
        artifacts = {name: uri for name, uri in artifacts.items() if name in only}
    layout = c.input_layout(inst)
    args: list[Any] = ["--entry", spec.entry]
    inputs = {name: (uri, f"{PROCESSING}/input/{name}") for name, uri in artifacts.items()}
    for name in artifacts:
        args += ["--input", f"{name}={layout.get(name, '')}"]
    for name, (uri, output) in c.metadata_sources(inst).items():
        if name in artifacts:
            inputs[name + METADATA_SUFFIX] = (uri, f"{PROCESSING}/input/{name}{METADATA_SUFFIX}")
            args += ["--metadata", f"{name}={output}"]
    for name, target in spec.mounts if only is None else ():
        local = f"{PROCESSING}/mounts/{name}"
        inputs[f"mount-{name}"] = (c.mount(spec, name).s3_uri, local)
        args += ["--mount", f"{target}={local}"]
    for name, value in params.items():
        args += ["--param", name, as_string(value)]
    inputs.update(extra or {})
    return processing_step(
        c, inst, inputs, [a.name for a in spec.outputs] + [RESULT_OUTPUT], PROCESSING_ENTRYPOINT,
        args, dict(env or {}), c.config.hints(spec.name).instance_count or 1, part)

def container_processing(c: Compiler, inst: Instance) -> Any:
    """A container component as a processing job running its own image and command line.

    Input artifacts arrive under ``/opt/ml/processing/input/<name>``; output ``y`` is the
    file or folder ``y`` inside ``/opt/ml/processing/output/<y>`` (the artifact's folder);
    output parameter files go to the result output, kept in S3 beside the artifacts.
    """
    from sagemaker.core.workflow.functions import Join

    from kubesage.dsl.container import Concat, Placeholder, expand

    spec = inst.task.spec
    assert spec.container is not None
    given, artifacts = c.arguments(inst)
    params = {**{p.name: p.default for p in spec.parameters if not p.required}, **given}
    paths: dict[str, str] = {}
    for arg, value in sorted(inst.task.arguments.items()):
        if isinstance(value, TaskOutput) and value.is_artifact:
            producer = c.producer(value, inst)
            if producer.kind not in ("processing", "transform"):
                from kubesage.targets.sagemaker.compiler import CompileError

                raise CompileError(
                    f"task '{inst.name}' (container component '{spec.name}') reads '{arg}' from "
                    f"{producer.kind} step '{producer.name}', whose artifact SageMaker packs "
                    "as model.tar.gz; only kubesage components unpack it")
            inner = f"/{value.output}" if producer.task.spec.container else ""
            paths[arg] = f"{PROCESSING}/input/{arg}{inner}"

    def resolve(ph: Placeholder) -> Any:
        if ph.direction == "inputs" and ph.kind == "parameters":
            return as_string(params[ph.name])
        if ph.direction == "inputs":
            return paths[ph.name]
        if ph.kind == "artifacts":
            return f"{PROCESSING}/output/{ph.name}/{ph.name}"
        return f"{PROCESSING}/output/{RESULT_OUTPUT}/{ph.name}"

    def present(name: str) -> bool:
        return params.get(name) is not None or name in artifacts

    def compiled(items: tuple[str, ...]) -> list[Any]:
        return [Join(on="", values=list(x.parts)) if isinstance(x, Concat) else x
                for x in expand(items, resolve, present)]

    return processing_step(
        c, inst, {name: (uri, f"{PROCESSING}/input/{name}") for name, uri in artifacts.items()},
        [a.name for a in spec.outputs] + ([RESULT_OUTPUT] if spec.returns else []),
        compiled(spec.container.command) or None, compiled(spec.container.args) or None,
        dict(spec.container.env), 1)

def processing_step(c: Compiler, inst: Instance, inputs: dict[str, tuple[Any, str]],
                     outputs: list[str], entrypoint: list[Any] | None,
                     arguments: list[Any] | None, env: dict[str, str],
                     instance_count: int, part: str = "") -> Any:
    """A ProcessingStep in the component's image: ``inputs`` maps an input name to (S3 URI,
    local path); each output ``name`` is uploaded from ``/opt/ml/processing/output/<name>``.
    ``part``: one of several steps of the task (named ``<task>-<part>``)."""
    spec, hints = inst.task.spec, c.config.hints(inst.task.spec.name)
    common = c.common(inst)
    if part:
        common["name"] = f"{inst.name}-{part}"
    return processing_job(
        c, base_job_name=f"{inst.name}-{part}" if part else inst.name,
        image_uri=c.config.image_uri(spec.image, spec.name),
        instance_type=hints.instance_type or c.config.processing_instance_type,
        volume_gb=hints.volume_size_gb or 30, inputs=inputs,
        outputs=[(name, c.s3(inst, *([part] if part else []), name)) for name in outputs],
        entrypoint=entrypoint, arguments=arguments,
        env={**env, STEP_ENV: inst.name, **gpu_env(inst.task)},
        instance_count=instance_count, common=common)


def processing_job(c: Compiler, *, base_job_name: str, image_uri: str, instance_type: str,
                   volume_gb: int, inputs: dict[str, tuple[Any, str]],
                   outputs: list[tuple[str, Any]], entrypoint: list[Any] | None,
                   arguments: list[Any] | None, env: dict[str, str], instance_count: int,
                   common: dict[str, Any], upload: str = "EndOfJob") -> Any:
    """A ProcessingStep: ``outputs`` are (name, S3 URI), each uploaded from
    ``/opt/ml/processing/output/<name>`` (``upload``: when, EndOfJob or Continuous);
    ``common`` its step settings (name, cache...)."""
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
    )
    from sagemaker.mlops.workflow.steps import ProcessingStep

    processor = Processor(
        role=c.config.role_arn,
        image_uri=image_uri,
        instance_count=instance_count,
        instance_type=instance_type,
        volume_size_in_gb=volume_gb,
        entrypoint=entrypoint,
        max_runtime_in_seconds=c.config.max_run_s,
        base_job_name=base_job_name,
        env=env,
        volume_kms_key=c.config.kms_key or None,
        output_kms_key=c.config.kms_key or None,
        network_config=NetworkConfig(enable_network_isolation=c.config.network_isolation or None,
                                     subnets=list(c.config.subnets),
                                     security_group_ids=list(c.config.security_groups)),
        sagemaker_session=c.session,
    )
    step_args = processor.run(
        inputs=[ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
            s3_uri=uri, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File"))
            for name, (uri, local) in inputs.items()],
        outputs=[ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=uri, local_path=f"{PROCESSING}/output/{name}", s3_upload_mode=upload))
            for name, uri in outputs],
        arguments=arguments)
    return ProcessingStep(step_args=step_args, property_files=[], **common)
