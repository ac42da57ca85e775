"""The SageMaker Pipelines target: compile, validate, run the definition locally, submit.

The SageMaker SDK (pinned, see ``session.SDK_VERSION``) and boto3 are imported only inside the
functions below, so importing this package stays as cheap as importing kubesage.

- ``compiler``: neutral graph -> definition JSON (``ProcessingStep``, ``TrainingStep``,
  ``ModelStep``, ``ConditionStep``/``FailStep``, batch transforms in ``transform``);
  ``parameters``, ``conditions`` beside it;
- ``config``: the target config file (``config/sagemaker.yaml``);
- ``validate``: each step's arguments against botocore's SageMaker service model;
- ``local_run``: executes a definition JSON on this machine, in Docker, under SageMaker's
  container contract; ``expressions`` evaluates its pipeline expressions;
- ``submit``: upsert and start executions with boto3.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubesage.targets.base import DeployOptions, RunOptions, SubmitOptions, Target, Workspace
from kubesage.util.atomic import write_atomic

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.launch import RunSetup
    from kubesage.runs.logs import LogPage
    from kubesage.runs.record import RunRecord, StepRecord
    from kubesage.runs.submitted import ServiceState
    from kubesage.store import RunStore
    from kubesage.targets.sagemaker.config import SageMakerConfig
    from kubesage.targets.sagemaker.local_run import DefinitionRun


class SageMakerTarget(Target):
    """SageMaker Pipelines: a definition JSON; kubesage's own executor runs it here."""

    name = "sagemaker"
    suffixes = (".json",)
    description = "SageMaker Pipelines definition JSON (run here in Docker)"
    contracts = ("sagemaker_processing", "sagemaker_training")
    runners = ("docker",)
    honours = frozenset({"tags", "use_cache", "images", "rerun_of", "resume_from"})

    def load_config(self, path: str | None = None) -> SageMakerConfig:
        from kubesage.targets.sagemaker.config import load_config

        return load_config(path)

    local_config_hint = "the local config (config/sagemaker.yaml's local_config names it)"

    def local_config_of(self, config: SageMakerConfig) -> LocalConfig:
        from kubesage.config.local import load_local_config

        return load_local_config(config.local_config)

    def compile(self, pipeline: Pipeline, output: str, config_path: str | None = None,
                source: str = "") -> None:
        """Compile ``pipeline`` to a SageMaker Pipelines definition JSON file (no AWS call), the
        project's images named by the code they hold."""
        from kubesage.targets.sagemaker.compiler import CompileError, definition_json
        from kubesage.targets.sagemaker.instances import check_config
        from kubesage.targets.sagemaker.limits import definition_limit_problems

        config = self.load_config(config_path)
        check_config(config)
        config = with_content_tags(config, pipeline, source)
        text = definition_json(pipeline, config)
        problems = definition_limit_problems(json.loads(text), config.region)
        if problems:  # nothing is written: the service would refuse it at run time
            raise CompileError(f"pipeline '{pipeline.name}' breaks SageMaker service limits: "
                               + "; ".join(problems))
        write_atomic(output, text)

    def explain(self, pipeline: Pipeline, config_path: str | None = None) -> str:
        """The groups of steps that share a job, why each boundary is where it is, jobs and
        pods before and after, and the projected saving (``kubesage.plan.explain``)."""
        from kubesage.targets.sagemaker.fusion import explain

        return explain(pipeline, config_path)

    def registry_refs(self, refs: dict[str, str], config_path: str | None = None) -> dict[str, str]:
        return dict(self.load_config(config_path).with_content_tags(refs).pinned)

    def validate(self, path: str, config_path: str | None = None) -> str:
        """Check a definition against botocore's SageMaker service model; a one-line summary.

        A definition does not name its region: instance types are checked in the region of the
        target config (``config_path``, else ``config/sagemaker.yaml`` where it exists), and
        per job kind only when there is no config."""
        import os

        from kubesage.targets.sagemaker.config import DEFAULT_PATH
        from kubesage.targets.sagemaker.validate import validate_definition_file

        has_config = config_path is not None or os.path.exists(DEFAULT_PATH)
        region = self.load_config(config_path).region if has_config else None
        return validate_definition_file(path, region)

    def check(self, pipeline: Pipeline, options: RunOptions) -> None:
        from kubesage.targets.sagemaker.local_run import refusals

        super().check(pipeline, options)
        refusals(pipeline)

    def logical_images(self, pipeline: Pipeline, config: SageMakerConfig) -> set[str]:
        """The components' images and the serving image of each batch transform."""
        return set(images_of(pipeline, config))

    def prepare(self, setup: RunSetup) -> DefinitionRun:
        """Compile, then execute the compiled definition locally in Docker (no AWS account)."""
        from kubesage.targets.sagemaker.local_run import DefinitionRun

        return DefinitionRun(setup)

    def submit(self, ref: str, options: SubmitOptions,
               workspace: Workspace | None = None) -> dict[str, Any]:
        """Upsert the pipeline and start executions (one per client) with boto3, each recorded
        as a run; ``wait`` watches them until they end."""
        from kubesage.runs.submitted import recorded
        from kubesage.targets.sagemaker.submit import submit_pipeline

        ws = workspace or self.workspace(options.config)
        result, records = recorded(
            self, options, ws,
            lambda: submit_pipeline(ref, options.params, ws.config, options.clients))
        for execution, record in zip(result["executions"], records, strict=True):
            execution["kubesage_run_id"] = record.run_id
            if options.wait:
                execution["status"] = record.status
        return result

    def deploy(self, models: dict[str, str], options: DeployOptions) -> dict[str, Any]:
        """Fetch (S3, submitted runs) or take (folders, local runs) the models, pack and upload
        them, then create or update the endpoint (multi-model for several, or per client)."""
        import os
        import tempfile

        import boto3

        from kubesage.docker_engine.images import check_pushed, content_refs
        from kubesage.project.loader import project_root
        from kubesage.serving.local import model_folder
        from kubesage.targets.sagemaker.deploy import SERVE_IMAGE, deploy, fetch_model

        workspace = self.workspace(options.config)
        config, store = workspace.config, workspace.store
        refs = content_refs(project_root(os.getcwd()), {SERVE_IMAGE})
        image = config.with_content_tags(refs).image_uri(SERVE_IMAGE, "serve")
        check_pushed([image])
        s3 = boto3.client("s3", region_name=config.region)
        with tempfile.TemporaryDirectory(prefix="kubesage-deploy-") as scratch:
            folders = {}
            for name, ref in models.items():
                uri = remote_model(ref, store)
                folders[name] = (fetch_model(uri, s3, os.path.join(scratch, name)) if uri
                                 else model_folder(ref, store))
            return deploy(folders, options.name, config, image,
                          boto3.client("sagemaker", region_name=config.region), s3,
                          multi_model=options.per_client, replace=options.replace)

    def poll_s(self, config: SageMakerConfig) -> float:
        """``$KUBESAGE_POLL_S``, else 15 s."""
        import os

        from kubesage.targets.sagemaker.submit import POLL_ENV

        return float(os.environ.get(POLL_ENV, "15"))

    def read(self, record: RunRecord) -> ServiceState:
        """The execution's status, steps, outputs and metrics, from SageMaker and S3."""
        import boto3

        from kubesage.targets.sagemaker.executions import read

        region = record.remote.get("region")
        return read(boto3.client("sagemaker", region_name=region), record,
                    boto3.client("s3", region_name=region))

    def logs(self, record: RunRecord, step: StepRecord, workspace: Workspace,
             cursor: str = "") -> LogPage:
        """A submitted step's job log from CloudWatch Logs; a local run's log file."""
        if not (record.remote and step.remote):
            return super().logs(record, step, workspace, cursor)
        import boto3

        from kubesage.targets.sagemaker.logs import read_log

        return read_log(boto3.client("logs", region_name=record.remote.get("region")), step,
                        cursor)

    def resume(self, record: RunRecord, store: RunStore, log: Any = None) -> RunRecord:
        """RetryPipelineExecution (failed) or a selective execution (stopped)."""
        import boto3

        from kubesage.targets.sagemaker.executions import resume

        return resume(boto3.client("sagemaker", region_name=record.remote.get("region")), record,
                      store)


def with_content_tags(config: SageMakerConfig, pipeline: Pipeline, source: str) -> SageMakerConfig:
    """``config`` naming the project's images by the code compiled (refused if not built)."""
    import os

    from kubesage.docker_engine.images import content_refs
    from kubesage.project.loader import project_root

    images = images_of(pipeline, config)
    for image, component in sorted(images.items()):  # each mapped, or a message naming its user
        config.image_uri(image, component)
    refs = content_refs(project_root(source or os.getcwd()), set(images))
    return config.with_content_tags(refs)


def remote_model(ref: str, store: RunStore) -> str:
    """The S3 URI of a model reference that lives in S3 (``s3://...``, or a submitted run's ID:
    its training job's ``model.tar.gz``); "" for a local one."""
    from kubesage.targets.sagemaker.deploy import DeployError

    if ref.startswith("s3://"):
        return ref
    try:
        record = store.get(ref)
    except (KeyError, ValueError):
        return ""
    if not record.remote:
        return ""
    if record.target != "sagemaker":
        raise DeployError(f"run {ref} ran on {record.target}, not SageMaker; give its model's "
                          "s3:// URI")
    found = [o["uri"] for s in record.steps for n, o in s.outputs.items()
             if n == "model.tar.gz" and o.get("uri")]
    if len(found) != 1:
        raise DeployError(f"run {ref} has {len(found)} training job models in its record; "
                          f"read them with 'kubesage runs refresh {ref}', or give one as "
                          "s3://.../model.tar.gz")
    return str(found[0])


def images_of(pipeline: Pipeline, config: SageMakerConfig) -> dict[str, str]:
    """The logical images the pipeline's definition runs (its components', and the serving
    image of each batch transform), each with a component that runs in it."""
    from kubesage.targets.sagemaker.compiler import step_kind

    found: dict[str, str] = {}
    for t in pipeline.tasks:
        found.setdefault(t.spec.image, t.spec.name)
        if t.spec.serving is not None and step_kind(t.spec, config, t.distribution) == "transform":
            found.setdefault(t.spec.serving.image, t.spec.name)
    return found


TARGET = SageMakerTarget()
