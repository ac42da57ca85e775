"""Re-run a recorded run exactly, on the target it ran on: the same pipeline, parameters, config
and images (pinned by ID), with the cache off, after checking that nothing changed since.

``from_failed`` continues a failed run instead: locally the steps that succeeded are reused from
its record (the cache on or off) and only the others run; a run on a service is continued there
(``Target.resume``). A submitted run re-runs exactly by submitting the compiled file it sent
(kept in the store) again, with its parameters, once its pipeline and image digests are checked
unchanged."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from kubesage.dsl.errors import KubesageError
from kubesage.project.loader import load_pipeline
from kubesage.runs.artifacts import fingerprint_tree
from kubesage.runs.inputs import resolve
from kubesage.runs.record import RunRecord
from kubesage.runs.store import RunStore
from kubesage.targets import base as targets


class RerunError(KubesageError):
    """A run cannot be reproduced: its pipeline, config, images or data have changed."""


def rerun(store: RunStore, run_id: str, log: TextIO | None = None, from_failed: bool = False,
          wait: bool = False) -> list[RunRecord]:
    """Execute run ``run_id`` again (no cache) on its own target, or (``from_failed``) only
    what did not succeed; the new runs' records (a submitted run's, followed when ``wait``)."""
    try:
        old = store.get(run_id)
    except KeyError:
        raise RerunError(f"no run '{run_id}' in {store.root}; 'kubesage runs list' shows them") from None
    if from_failed and old.status not in ("failed", "cancelled", "abandoned"):
        raise RerunError(f"run {old.run_id} is {old.status}; --from-failed continues a failed, "
                         "cancelled or abandoned run" + (
                             f" (read its state first: 'kubesage runs refresh {old.run_id}')"
                             if old.remote and old.status == "running" else ""))
    if old.remote:
        return _resubmit(store, old, log, from_failed, wait)
    return [_run_again(store, old, log, from_failed)]


def _run_again(store: RunStore, old: RunRecord, log: TextIO | None, from_failed: bool) -> RunRecord:
    commit = old.git.get("commit", "")
    at_commit = f" (it ran at git commit {commit[:12]}; check that out)" if commit else ""
    if not old.pipeline_file or not os.path.isfile(old.pipeline_file):
        raise RerunError(f"run {old.run_id}: its pipeline file {old.pipeline_file or '(none)'} is gone"
                         + at_commit)
    if old.config and not os.path.isfile(old.config):
        raise RerunError(f"run {old.run_id}: its {old.target} config {old.config} is gone; restore it")
    definition, path = load_pipeline(f"{old.pipeline_file}:{old.pipeline}")
    pipeline = definition.build()
    if pipeline.digest() != old.pipeline_hash:
        raise RerunError(f"pipeline '{old.pipeline}' in {path} has changed since run {old.run_id}"
                         + at_commit)
    target = targets.get(old.target)
    config = old.config or None
    local = target.local_config(config)
    for name, fingerprint in old.data.items():
        folder = local.mounts.get(name, "")
        current = fingerprint_tree(folder) if os.path.isdir(folder) else "(missing)"
        if current != fingerprint:
            raise RerunError(
                f"run {old.run_id}: the data under mounts.{name} ({folder or 'not configured'}) "
                f"has changed since it ran (fingerprint {fingerprint[:12]} -> {current[:12]}); "
                "restore that data to re-run it")
    for name, given in old.inputs.items():
        now = resolve(name, given["from"], store) if _exists(given["from"], store) else None
        if now is None or now["sha256"] != given["sha256"]:
            raise RerunError(f"run {old.run_id}: its input artifact '{name}' ({given['from']}) "
                             "has changed or is gone since it ran; restore it to re-run the run")
    pins = _pins(old, path, at_commit)
    if pins:  # the code the run ran, not the working tree's: say so
        print(f"re-running {old.run_id} with the images it ran, pinned by ID (their code is as "
              f"of that run{', git ' + commit[:12] if commit else ''}, not the working tree's)",
              file=log or sys.stderr, flush=True)
    runner = old.runner if old.target == "local" else None
    options = targets.RunOptions(params=old.parameters, config=config, pipeline_file=path,
                                 runner=runner, tags=old.tags, use_cache=False, images=pins,
                                 rerun_of=old.run_id, log=log,
                                 resume_from=old.run_id if from_failed else "",
                                 inputs={name: given["from"] for name, given in old.inputs.items()})
    target.check(pipeline, options)  # a target that cannot resume says so by name
    return target.run(pipeline, options)


def _resubmit(store: RunStore, old: RunRecord, log: TextIO | None, from_failed: bool,
              wait: bool) -> list[RunRecord]:
    """A submitted run again on its service: continued (``from_failed``) or submitted anew
    from the compiled file it sent, after checking that nothing it ran has changed."""
    from kubesage.docker_engine.images import check_pushed
    from kubesage.runs.lineage import file_sha256
    from kubesage.runs.submitted import notifications, watch

    target = targets.get(old.target)
    out = log or sys.stderr
    if from_failed:
        record = target.resume(old, store, log)
        print(f"run {record.run_id} continues {old.run_id} on {old.target} "
              f"({record.remote.get('how')})", file=out, flush=True)
        if wait:
            def say(text: str) -> None:
                print(text, file=out, flush=True)

            with notifications(target, old.config or None, say) as notify:
                watch(record, store, target.read, target.poll_s(old.config or None), say, notify)
        return [record]
    kept = old.remote.get("compiled", "")
    if not kept or not os.path.isfile(kept) or file_sha256(kept) != old.compiled_sha256:
        raise RerunError(f"run {old.run_id}: the compiled file it sent ({kept or 'not kept'}) is "
                         "gone or changed, so it cannot be re-run exactly; submit the pipeline again")
    if old.pipeline_file:
        if not os.path.isfile(old.pipeline_file):
            raise RerunError(f"run {old.run_id}: its pipeline file {old.pipeline_file} is gone")
        definition, path = load_pipeline(f"{old.pipeline_file}:{old.pipeline}")
        if definition.build().digest() != old.pipeline_hash:
            raise RerunError(f"pipeline '{old.pipeline}' in {path} has changed since run "
                             f"{old.run_id}; submit it anew, or check out the commit it ran at "
                             f"({old.git.get('commit', '?')[:12]})")
    now = check_pushed(old.images)
    changed = [ref for ref, digest in old.images.items() if now.get(ref) != digest]
    if changed:
        raise RerunError(f"run {old.run_id}: image {changed[0]} has changed in its registry since "
                         f"(digest {old.images[changed[0]][:19]} -> {now[changed[0]][:19]}); "
                         "push the image it ran back under that tag, or submit anew")
    from kubesage.dsl.pipeline import secret_env
    from kubesage.dsl.types import MASK

    params = dict(old.parameters)
    for name in [k for k, v in params.items() if v == MASK]:  # never recorded: from the env
        if not os.environ.get(secret_env(name)):
            raise RerunError(f"run {old.run_id} had the secret parameter '{name}', which is never "
                             f"recorded; set {secret_env(name)} to re-run it")
        params[name] = os.environ[secret_env(name)]
    client = old.remote.get("client")
    if client:
        params.pop(old.remote.get("client_parameter", ""), None)
    result = target.submit(kept, targets.SubmitOptions(
        params=params, config=old.config or None, wait=wait, clients=[client] if client else None,
        tags=old.tags, rerun_of=old.run_id, log=log))
    return [store.get(e["kubesage_run_id"])
            for e in result.get("executions", result.get("runs", []))]


def _exists(source: str, store: RunStore) -> bool:
    try:
        resolve("input", source, store)
    except KubesageError:
        return False
    return True


def _pins(old: RunRecord, path: str, at_commit: str) -> dict[str, str]:
    """Logical image -> the image ID the run used; a subprocess run checks its code hash."""
    if old.runner == "subprocess":
        from kubesage.project.loader import project_root
        from kubesage.targets.local.process_executor import ProcessExecutor

        executor = ProcessExecutor(project_root(path))
        for image, recorded in old.images.items():
            if executor.environment_id(image) != recorded:
                raise RerunError(f"run {old.run_id}: the code has changed since it ran" + at_commit)
        return {}
    import docker
    import docker.errors

    client = docker.from_env()
    for image, recorded in old.images.items():
        try:
            client.images.get(recorded)
        except docker.errors.ImageNotFound:
            raise RerunError(f"run {old.run_id}: image {image} ({recorded[:19]}) no longer "
                             "exists, so the run cannot be reproduced") from None
    return dict(old.images)
