"""Re-run a recorded run exactly, on the target it ran on: the same pipeline, parameters, config
and images (pinned by ID), with the cache off, after checking that nothing changed since.

``from_failed`` continues a failed run instead: locally the steps that succeeded are reused from
its record (the cache on or off) and only the others run; a run on a service is continued there
(``Target.resume``). A submitted run re-runs exactly by submitting the compiled file it sent
(kept in the store) again, with its parameters, once its pipeline and image digests are checked
unchanged.

The targets are reached through ``target_of`` (the registry's ``get``): the neutral core knows
none of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from kubesage.dsl.errors import KubesageError
from kubesage.project.loader import load_pipeline
from kubesage.runs.artifacts import fingerprint_tree
from kubesage.runs.inputs import resolve
from kubesage.runs.options import RunOptions, SubmitOptions
from kubesage.runs.record import RunRecord
from kubesage.runs.workspace import Workspace

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline


class RerunError(KubesageError):
    """A run cannot be reproduced: its pipeline, config, images or data have changed."""


def rerun(workspace: Workspace, run_id: str, target_of: Callable[[str], Any],
          log: TextIO | None = None, from_failed: bool = False,
          wait: bool = False) -> list[RunRecord]:
    """Execute run ``run_id`` of the workspace's store again (no cache) on its own target, or
    (``from_failed``) only what did not succeed; the new runs' records (a submitted run's,
    followed when ``wait``)."""
    store = workspace.store
    try:
        old = store.get(run_id)
    except KeyError:
        raise RerunError(f"no run '{run_id}' in {store.location}; 'kubesage runs list' shows them") from None
    if from_failed and old.status not in ("failed", "cancelled", "abandoned"):
        raise RerunError(f"run {old.run_id} is {old.status}; --from-failed continues a failed, "
                         "cancelled or abandoned run" + (
                             f" (read its state first: 'kubesage runs refresh {old.run_id}')"
                             if old.remote and old.status == "running" else ""))
    if old.config and not os.path.isfile(old.config):
        raise RerunError(f"run {old.run_id}: its {old.target} config {old.config} is gone; restore it")
    target = target_of(old.target)
    own = _workspace_of(target, old, workspace)
    if old.remote:
        return _resubmit(own, target, old, log, from_failed, wait)
    return [_run_again(own, target, old, log, from_failed)]


def newest_tagged(workspace: Workspace, tags: dict[str, str]) -> str:
    """The ID of the newest run with every one of ``tags`` (``rerun --tag K=V``)."""
    if not tags:
        raise RerunError("name the run to re-run: kubesage rerun RUN_ID, or --tag KEY=VALUE for "
                         "the newest run with that tag")
    found = workspace.store.list(limit=1, tags=tags)
    if not found:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
        raise RerunError(f"no run has the tag {shown} in {workspace.store.location}; "
                         "'kubesage runs list --tag KEY=VALUE' shows tagged runs")
    return found[0].run_id


def _workspace_of(target: Any, old: RunRecord, workspace: Workspace) -> Workspace:
    """The workspace of the run's own target config, sharing the open store when it is the
    same one."""
    config_path = old.config or None
    config = target.load_config(config_path)
    if config_path is None and type(config) is type(workspace.config):
        config = workspace.config  # the run named no file: the command's config was its config
    local = target.local_config_of(config)
    if local.store_url == workspace.local.store_url:
        return Workspace(config, local, workspace.store, config_path)
    return Workspace.open(config, local, config_path)


def _unchanged_pipeline(old: RunRecord, at_commit: str) -> tuple[Pipeline, str]:
    """The run's pipeline, built from its file, refused when it changed since."""
    if not old.pipeline_file or not os.path.isfile(old.pipeline_file):
        raise RerunError(f"run {old.run_id}: its pipeline file {old.pipeline_file or '(none)'} is gone"
                         + at_commit)
    definition, path = load_pipeline(f"{old.pipeline_file}:{old.pipeline}")
    pipeline = definition.build()
    if pipeline.digest() != old.pipeline_hash:
        raise RerunError(f"pipeline '{old.pipeline}' in {path} has changed since run {old.run_id}"
                         + at_commit)
    return pipeline, path


def _unchanged_data(workspace: Workspace, old: RunRecord) -> None:
    """Refuse when the data under a mount, or an input artifact, changed since the run."""
    for name, fingerprint in old.data.items():
        folder = workspace.local.mounts.get(name, "")
        current = fingerprint_tree(folder) if os.path.isdir(folder) else "(missing)"
        if current != fingerprint:
            raise RerunError(
                f"run {old.run_id}: the data under mounts.{name} ({folder or 'not configured'}) "
                f"has changed since it ran (fingerprint {fingerprint[:12]} -> {current[:12]}); "
                "restore that data to re-run it")
    for name, given in old.inputs.items():
        now = (resolve(name, given["from"], workspace.store)
               if _exists(given["from"], workspace) else None)
        if now is None or now["sha256"] != given["sha256"]:
            raise RerunError(f"run {old.run_id}: its input artifact '{name}' ({given['from']}) "
                             "has changed or is gone since it ran; restore it to re-run the run")


def _run_again(workspace: Workspace, target: Any, old: RunRecord, log: TextIO | None,
               from_failed: bool) -> RunRecord:
    commit = old.git.get("commit", "")
    at_commit = f" (it ran at git commit {commit[:12]}; check that out)" if commit else ""
    pipeline, path = _unchanged_pipeline(old, at_commit)
    _unchanged_data(workspace, old)
    try:
        pins = target.pins(old, path)
    except KubesageError as e:
        raise RerunError(f"run {old.run_id}: {e}" + at_commit) from None
    if pins:  # the code the run ran, not the working tree's: say so
        print(f"re-running {old.run_id} with the images it ran, pinned by ID (their code is as "
              f"of that run{', git ' + commit[:12] if commit else ''}, not the working tree's)",
              file=log or sys.stderr, flush=True)
    options = RunOptions(params=old.parameters, config=old.config or None, pipeline_file=path,
                         runner=old.runner if old.target == "local" else None, tags=old.tags,
                         use_cache=False, images=pins, rerun_of=old.run_id, log=log,
                         resume_from=old.run_id if from_failed else "",
                         inputs={name: given["from"] for name, given in old.inputs.items()})
    record: RunRecord = target.run(pipeline, options, workspace)
    return record


def _resubmit(workspace: Workspace, target: Any, old: RunRecord, log: TextIO | None,
              from_failed: bool, wait: bool) -> list[RunRecord]:
    """A submitted run again on its service: continued (``from_failed``) or submitted anew
    from the compiled file it sent, after checking that nothing it ran has changed."""
    from kubesage.runs.submitted import notifications, watch

    out = log or sys.stderr
    if from_failed:
        record: RunRecord = target.resume(old, workspace.store, log)
        print(f"run {record.run_id} continues {old.run_id} on {old.target} "
              f"({record.remote.get('how')})", file=out, flush=True)
        if wait:
            def say(text: str) -> None:
                print(text, file=out, flush=True)

            with notifications(workspace.local.webhooks, say) as notify:
                watch(record, workspace.store, target.read, target.poll_s(workspace.config),
                      say, notify)
        return [record]
    kept = _kept_compiled(old)
    _check_resubmittable(target, old)
    client = old.remote.get("client")
    params = _secret_parameters(old)
    if client:
        params.pop(old.remote.get("client_parameter", ""), None)
    result = target.submit(kept, SubmitOptions(
        params=params, config=old.config or None, wait=wait, clients=[client] if client else None,
        tags=old.tags, rerun_of=old.run_id, log=log), workspace)
    return [workspace.store.get(e["kubesage_run_id"])
            for e in result.get("executions", result.get("runs", []))]


def _kept_compiled(old: RunRecord) -> str:
    """The compiled file a submitted run sent, as kept in the store, checked unchanged."""
    from kubesage.runs.lineage import file_sha256

    kept = str(old.remote.get("compiled", ""))
    if not kept or not os.path.isfile(kept) or file_sha256(kept) != old.compiled_sha256:
        raise RerunError(f"run {old.run_id}: the compiled file it sent ({kept or 'not kept'}) is "
                         "gone or changed, so it cannot be re-run exactly; submit the pipeline again")
    return kept


def _check_resubmittable(target: Any, old: RunRecord) -> None:
    """Refuse when the run's pipeline or an image in its registry changed since it was sent."""
    if old.pipeline_file:
        if not os.path.isfile(old.pipeline_file):
            raise RerunError(f"run {old.run_id}: its pipeline file {old.pipeline_file} is gone")
        definition, path = load_pipeline(f"{old.pipeline_file}:{old.pipeline}")
        if definition.build().digest() != old.pipeline_hash:
            raise RerunError(f"pipeline '{old.pipeline}' in {path} has changed since run "
                             f"{old.run_id}; submit it anew, or check out the commit it ran at "
                             f"({old.git.get('commit', '?')[:12]})")
    now = target.registry_digests(old.images)
    changed = [ref for ref, digest in old.images.items() if now.get(ref) != digest]
    if changed:
        raise RerunError(f"run {old.run_id}: image {changed[0]} has changed in its registry since "
                         f"(digest {old.images[changed[0]][:19]} -> {now[changed[0]][:19]}); "
                         "push the image it ran back under that tag, or submit anew")


def _secret_parameters(old: RunRecord) -> dict[str, Any]:
    """The run's parameters, each secret one (never recorded) taken from the environment."""
    from kubesage.dsl.pipeline import secret_env
    from kubesage.dsl.types import MASK

    params = dict(old.parameters)
    for name in [k for k, v in params.items() if v == MASK]:
        if not os.environ.get(secret_env(name)):
            raise RerunError(f"run {old.run_id} had the secret parameter '{name}', which is never "
                             f"recorded; set {secret_env(name)} to re-run it")
        params[name] = os.environ[secret_env(name)]
    return params


def _exists(source: str, workspace: Workspace) -> bool:
    try:
        resolve("input", source, workspace.store)
    except KubesageError:
        return False
    return True
