"""The Kubeflow Pipelines target: compile to KFP v2 IR, validate it, run it locally, submit it.

Modules, one concern each: ``config`` (config/kfp.yaml), ``components`` (one container
component per task), ``platform`` (kfp-kubernetes settings), ``trainjob`` (multi-node steps on
Kubeflow Trainer), ``compiler``, ``validate``, ``local_run`` (kfp.local DockerRunner),
``submit`` (kfp.Client). The kfp SDK is imported only inside this package, and only when used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from kubesage.targets.base import DeployOptions, RunOptions, SubmitOptions, Target, Workspace

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.dsl.interface import ComponentSpec
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.launch import RunSetup
    from kubesage.runs.logs import LogPage
    from kubesage.runs.record import RunRecord, StepRecord
    from kubesage.runs.submitted import ServiceState
    from kubesage.store import RunStore
    from kubesage.targets.kfp.config import KfpConfig
    from kubesage.targets.kfp.local_run import KfpLocalRun


class KfpTarget(Target):
    """Kubeflow Pipelines v2: IR YAML; kfp.local runs it here, kfp.Client submits it."""

    name = "kfp"
    suffixes = (".yaml", ".yml")
    description = "Kubeflow Pipelines v2 IR YAML (kfp.local runs it here)"
    contracts = ("kfp", "local")  # a TrainJob's nodes run the local contract
    runners = ("docker",)
    honours = frozenset({"tags", "use_cache", "images", "rerun_of"})

    def load_config(self, path: str | None = None) -> KfpConfig:
        from kubesage.targets.kfp.config import load_kfp_config

        return load_kfp_config(path)

    local_config_hint = "the local config (config/kfp.yaml's local.config names it)"

    def local_config_of(self, config: KfpConfig) -> LocalConfig:
        from kubesage.config.local import load_local_config

        return load_local_config(config.local_config)

    def compile(self, pipeline: Pipeline, output: str, config_path: str | None = None,
                source: str = "") -> None:
        """Write the pipeline's KFP v2 IR YAML to ``output`` (atomically), the project's images
        named by the code they hold."""
        from kubesage.docker_engine.images import content_refs
        from kubesage.project.loader import project_root
        from kubesage.targets.kfp.compiler import compile_to_file

        config = self.load_config(config_path)  # a mistake in the config first
        refs = content_refs(project_root(source or os.getcwd()), {t.spec.image for t in pipeline.tasks})
        compile_to_file(pipeline, output, config.with_content_tags(refs))

    def explain(self, pipeline: Pipeline, config_path: str | None = None) -> str:
        """The groups of steps that share a job, why each boundary is where it is, jobs and
        pods before and after, and the projected saving (``kubesage.plan.explain``)."""
        from kubesage.targets.kfp.fusion import explain

        return explain(pipeline, config_path)

    def registry_refs(self, refs: dict[str, str], config_path: str | None = None) -> dict[str, str]:
        return dict(self.load_config(config_path).with_content_tags(refs).pinned)

    def validate(self, path: str, config_path: str | None = None) -> str:
        """Check a compiled YAML strictly; a one-line summary, or a ``KfpValidationError``."""
        from kubesage.targets.kfp.validate import validate_file

        return validate_file(path)

    def check(self, pipeline: Pipeline, options: RunOptions) -> None:
        from kubesage.targets.kfp.local_run import refusals

        super().check(pipeline, options)
        refusals(pipeline)

    def prepare(self, setup: RunSetup) -> KfpLocalRun:
        """Compile, then run the compiled YAML with kfp.local's DockerRunner."""
        from kubesage.targets.kfp.local_run import KfpLocalRun

        return KfpLocalRun(setup)

    def submit(self, ref: str, options: SubmitOptions,
               workspace: Workspace | None = None) -> dict[str, Any]:
        """Submit a pipeline file (compiled on the fly) or a compiled YAML through kfp.Client,
        each run recorded; ``wait`` watches them until they end."""
        from kubesage.runs.submitted import recorded
        from kubesage.targets.kfp.submit import submit

        ws = workspace or self.workspace(options.config)
        result, records = recorded(
            self, options, ws,
            lambda: submit(ref, options.params, ws.config, options.clients, options.log))
        for run, record in zip(result["runs"], records, strict=True):
            run["kubesage_run_id"] = record.run_id
            if options.wait:
                run["status"] = record.status
        return result

    def deploy(self, models: dict[str, str], options: DeployOptions) -> dict[str, Any]:
        """A KServe InferenceService per model (its URI on the cluster), checked against the
        CRD's schema and written; ``apply``: handed to kubectl."""
        from kubesage.docker_engine.images import check_pushed, content_refs
        from kubesage.project.loader import project_root
        from kubesage.targets.kfp.deploy import SERVE_IMAGE, DeployError, deploy

        if options.replace:
            raise DeployError("--replace: Kubeflow deploys one InferenceService per client, so "
                              "a deploy never drops the others; remove one with kubectl delete "
                              "inferenceservice NAME")
        workspace = self.workspace(options.config)
        for client, ref in models.items():
            try:
                record = workspace.store.get(ref)
            except (KeyError, ValueError):
                continue
            raise DeployError(
                f"model '{client}': {ref} is run {record.run_id}, but the Kubeflow runs API "
                "does not give its artifacts' URIs (they live in ML Metadata); give the "
                f"model's URI in the pipeline root: --model {client}=s3://...")
        config = workspace.config
        refs = content_refs(project_root(os.getcwd()), {SERVE_IMAGE})
        image = config.with_content_tags(refs).image(SERVE_IMAGE)
        check_pushed([image])
        return deploy(models, options.name, config, image, options.output, options.apply,
                      options.per_client)

    def export_component(self, spec: ComponentSpec, output: str,
                         config_path: str | None = None) -> str:
        """Write one component as a Kubeflow component YAML (``kfp.components`` loads it)."""
        from kubesage.targets.kfp.component_yaml import export_component

        return export_component(spec, output, self.load_config(config_path))

    def poll_s(self, config: KfpConfig) -> float:
        """``wait.poll_seconds`` of the config."""
        return float(config.wait_poll_s)

    def read(self, record: RunRecord) -> ServiceState:
        """The run's state and its tasks' states, from the Kubeflow Pipelines API."""
        from kubesage.targets.kfp.runs import api_client, read

        return read(api_client(record), record)

    def logs(self, record: RunRecord, step: StepRecord, workspace: Workspace,
             cursor: str = "") -> LogPage:
        """A submitted step's pod log (the Kubernetes API); a kfp.local run's log file."""
        if not (record.remote and step.remote):
            return super().logs(record, step, workspace, cursor)
        from kubesage.targets.kfp.logs import core_api, read_log

        return read_log(core_api(), record, step, cursor)

    def resume(self, record: RunRecord, store: RunStore, log: Any = None) -> RunRecord:
        """The run retry API: the service runs the failed tasks again, and what follows."""
        from kubesage.targets.kfp.runs import api_client, resume

        return resume(api_client(record), record, store)


TARGET = KfpTarget()

__all__ = ["TARGET", "KfpTarget"]
