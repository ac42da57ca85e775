"""Step fusion, fused against unfused: jobs and pods per run, local wall time, projected saving.

For the reference pipeline and a chain of 10 ``probe`` steps:

1. jobs per run on SageMaker and executor tasks and pods per run on Kubeflow, with the target's
   example config (``fusion: auto``) and with ``fusion: off`` (``kubesage.plan.explain``);
2. the wall time of ``kubesage run --target sagemaker`` (the definition executor) and of
   ``kubesage run --target kfp`` (kfp.local), fused and unfused in turns in the same run, cache
   off; reported as a ratio fused / unfused (locally a job starts in a second, not in minutes:
   this measures what fusion costs or saves here, not on the service);
3. the projected saving on each service: the waiting for starts along the critical path, with
   the target's start-cost table.

    .venv/bin/python benchmarks/fusion.py [--rounds 2] [--skip-runs] [--json FILE]
        [--only PIPELINE-OR-TARGET] [--image-tag code-<hash>]

Goals: SageMaker jobs for the reference pipeline <= 4 (7 unfused); Kubeflow executor tasks <= 3
(6 unfused); the chain of 10 probes one job and one task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from components.probe import probe  # noqa: E402
from kubesage import pipeline  # noqa: E402

REFERENCE = "pipelines/image_classification.py"
CHAIN = "benchmarks/fusion.py:probe-chain"
REFERENCE_PARAMS = ["--param", "epochs=2", "--param", "threshold=0.0"]  # every step runs


@pipeline(name="probe-chain")
def probe_chain(message: str = "ok") -> None:
    """Ten ``probe`` steps, each reading the message the one before returned."""
    previous = probe(message=message).set_name("probe-0")
    for i in range(1, 10):
        previous = probe(message=previous.output).set_name(f"probe-{i}")


# -- counts and projections ------------------------------------------------------------------
def counts(ref: str, fusion: str) -> dict[str, Any]:
    """Jobs, pods and the critical path's waiting for starts on both services."""
    import dataclasses

    from kubesage.plan import Plan
    from kubesage.plan.costs import FusionSettings
    from kubesage.plan.explain import project
    from kubesage.project.loader import load_pipeline
    from kubesage.targets.kfp.config import load_kfp_config
    from kubesage.targets.kfp.fusion import fusion_plan as kfp_fusion
    from kubesage.targets.sagemaker.config import load_config
    from kubesage.targets.sagemaker.fusion import fusion_plan as sagemaker_fusion
    from kubesage.targets.sagemaker.parameters import fan_out_parameters

    built = load_pipeline(os.path.join(ROOT, ref))[0].build()
    off = FusionSettings(mode="off")
    sm_config = load_config(os.path.join(ROOT, "config", "sagemaker.yaml"))
    kfp_config = load_kfp_config(os.path.join(ROOT, "config", "kfp.yaml"))
    if fusion == "off":
        sm_config = dataclasses.replace(sm_config, fusion=off)
        kfp_config = dataclasses.replace(kfp_config, fusion=off)
    fan_out = fan_out_parameters(built)
    plan = Plan(built, None, expand=lambda loop: loop.id not in fan_out)
    sm = project(sagemaker_fusion(plan, sm_config), plan)
    kfp_plan, kfp = kfp_fusion(built, kfp_config.fusion)
    kf = project(kfp, kfp_plan)
    return {"sagemaker_jobs": sum(sm.jobs_after.values()), "sagemaker_wait_s": sm.wait_after_s,
            "kfp_tasks": sum(kf.jobs_after.values()), "kfp_pods": kf.pods_after,
            "kfp_wait_s": kf.wait_after_s}


# -- local runs ------------------------------------------------------------------------------
IMAGE_TAG = ["latest"]  # --image-tag: a tag of the image that holds this checkout's code


def write_configs(folder: str, fsx: str, fusion: str) -> dict[str, str]:
    """config/sagemaker.yaml and config/kfp.yaml with ``fusion``, their local runs in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    local = os.path.join(folder, "local.yaml")
    with open(local, "w") as f:
        yaml.safe_dump({"mounts": {"fsx": fsx}, "store": os.path.join(folder, "store"),
                        "image_tag": IMAGE_TAG[0]}, f)
    paths = {}
    for target in ("sagemaker", "kfp"):
        with open(os.path.join(ROOT, "config", f"{target}.yaml")) as f:
            doc = yaml.safe_load(f)
        doc.setdefault("fusion", {})
        doc["fusion"] = {**doc["fusion"], "mode": fusion} if isinstance(doc["fusion"], dict) \
            else {"mode": fusion}
        if target == "sagemaker":
            doc["local_config"] = local
            doc.pop("conditions", None)  # a condition that does not hold skips, as elsewhere
        else:
            doc["local"] = {"config": local}
        paths[target] = os.path.join(folder, f"{target}.yaml")
        with open(paths[target], "w") as f:
            yaml.safe_dump(doc, f)
    return paths


def run(ref: str, target: str, config: str, params: list[str]) -> float:
    """Seconds of one uncached ``kubesage run``; fails loudly when the run does not succeed."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kubesage.cli", "run", ref, "--target", target,
                           "--config", config, "--no-cache", "--json", *params], cwd=ROOT,
                          capture_output=True, text=True)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{ref} on {target} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return took


def wall_times(tmp: str, fsx: str, rounds: int, only: str = "") -> dict[str, Any]:
    """Each run in a store of its own: no checkpoints or outputs of an earlier run to resume."""
    found: dict[str, Any] = {}
    runs = 0
    for ref, params in ((CHAIN, []), (REFERENCE, REFERENCE_PARAMS)):
        for target in ("sagemaker", "kfp"):
            if only and only not in f"{ref} {target}":
                continue
            times: dict[str, list[float]] = {"auto": [], "off": []}
            for i in range(rounds):  # in turns: both see the same load
                for mode in (("auto", "off") if i % 2 == 0 else ("off", "auto")):
                    runs += 1
                    config = write_configs(os.path.join(tmp, str(runs)), fsx, mode)[target]
                    times[mode].append(run(ref, target, config, params))
            fused, unfused = statistics.median(times["auto"]), statistics.median(times["off"])
            found[f"{ref} {target}"] = {"fused_s": round(fused, 2),
                                        "unfused_s": round(unfused, 2),
                                        "ratio": round(fused / unfused, 3),
                                        "runs": {m: [round(t, 2) for t in ts]
                                                 for m, ts in times.items()}}
            print(f"{ref} on {target}: fused {fused:.2f} s, unfused {unfused:.2f} s, "
                  f"ratio {fused / unfused:.2f}", flush=True)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="runs of each side (default 2)")
    p.add_argument("--skip-runs", action="store_true", help="counts and projections only")
    p.add_argument("--only", help="time only refs containing this (e.g. image_classification)")
    p.add_argument("--json", help="write the numbers here too")
    p.add_argument("--image-tag", default="latest",
                   help="the runs' image tag (default latest; on an engine others build on too, "
                        "this checkout's content tag, code-<hash>)")
    args = p.parse_args()
    IMAGE_TAG[0] = args.image_tag
    results: dict[str, Any] = {"counts": {}}
    for ref in (REFERENCE, CHAIN):
        before, after = counts(ref, "off"), counts(ref, "auto")
        results["counts"][ref] = {"unfused": before, "fused": after}
        print(f"{ref}: SageMaker jobs {before['sagemaker_jobs']} -> {after['sagemaker_jobs']} "
              f"(waiting {before['sagemaker_wait_s']:.0f} s -> {after['sagemaker_wait_s']:.0f} s);"
              f" Kubeflow tasks {before['kfp_tasks']} -> {after['kfp_tasks']}, pods "
              f"{before['kfp_pods']} -> {after['kfp_pods']} (waiting {before['kfp_wait_s']:.0f} s"
              f" -> {after['kfp_wait_s']:.0f} s)", flush=True)
    if not args.skip_runs:
        from kubesage.project.sample_data import write_digits

        with tempfile.TemporaryDirectory(prefix="kubesage-fusion-") as tmp:
            fsx = os.path.join(tmp, "fsx")
            write_digits(fsx)
            results["wall"] = wall_times(tmp, fsx, args.rounds, args.only or "")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
