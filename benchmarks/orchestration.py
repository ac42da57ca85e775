"""Orchestration overhead of the local Docker runner, measured against bare ``docker run``.

1. Time added per step: a chain of N ``probe`` steps (cache off) run by kubesage, against N bare
   ``docker run --rm`` of the same image doing the same work (the same task file).
2. A fully cached re-run of the reference pipeline from a cold CLI, against its first run.
3. kfp.local's DockerRunner (the kfp SDK's local runner) on the compiled Kubeflow YAML of the same
   pipelines, against kubesage's own Docker runner: the chain of N ``probe`` steps and the
   reference pipeline, uncached on both sides.

    .venv/bin/python benchmarks/orchestration.py [--steps 5] [--repeats 3] [--skip-kfp]
        [--against CHECKOUT]

``--against CHECKOUT`` (another checkout of kubesage, e.g. ``git worktree add /tmp/old <commit>``)
also times the chain in that checkout's code, in turns with this one's, in the same run: the
ratio says whether a change made orchestration slower.

Targets: <= 0.3 s added per step; cached re-run <= 1 s; kubesage >= 2x faster than kfp.local.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from components.probe import probe  # noqa: E402
from kubesage import pipeline  # noqa: E402
from kubesage.config.local import LocalConfig  # noqa: E402
from kubesage.project.sample_data import write_digits  # noqa: E402
from kubesage.runtime.invoke import Invocation  # noqa: E402
from kubesage.runtime.local import task_file  # noqa: E402
from kubesage.targets.local.runner import runner_for  # noqa: E402

IMAGE = "kubesage/torch:latest"


def chain(n: int):  # type: ignore[no-untyped-def]
    @pipeline(name="chain")
    def chain_pipeline() -> None:
        previous = None
        for i in range(n):
            task = probe(message=f"step {i}").set_caching(False)
            if previous is not None:
                task.after(previous)
            previous = task

    return chain_pipeline.build()


def bare_docker_run(store: str) -> float:
    """One ``docker run`` of the probe step, the way a person would run it by hand."""
    out = os.path.join(store, "bare", "result.partial")
    os.makedirs(out, exist_ok=True)
    tf = os.path.join(store, "bare", "task.json")
    with open(tf, "w") as f:
        json.dump(task_file("components.probe:probe",
                            Invocation({"message": "bare", "seconds": 0.0, "exit_code": 0}, {},
                                       {"result": out}),
                            os.path.join(store, "bare", "result.json")), f)
    start = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "-v", f"{store}:{store}", IMAGE, "local", tf],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-kfp", action="store_true", help="leave out the kfp.local comparison")
    ap.add_argument("--against", metavar="CHECKOUT", help="time the chain in this checkout too")
    args = ap.parse_args()
    if args.against:
        against(os.path.abspath(args.against), args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        os.makedirs(store)
        config = LocalConfig(store=store, parallelism=4)
        runner = runner_for("docker", config, ROOT, log=io.StringIO())
        pipe = chain(args.steps)
        bare_docker_run(store)  # warm the page cache for both sides
        bare, ours = [], []
        for _ in range(args.repeats):
            bare.append(statistics.median(bare_docker_run(store) for _ in range(args.steps)))
            start = time.perf_counter()
            record = runner.run(pipe)
            assert record.status == "succeeded", record.to_dict()
            ours.append((time.perf_counter() - start) / args.steps)
        t_bare, t_ours = statistics.median(bare), statistics.median(ours)
        added = t_ours - t_bare
        print(f"per step: bare docker run {t_bare:.3f} s, kubesage {t_ours:.3f} s, "
              f"added {added:+.3f} s ({t_ours / t_bare:.2f}x of bare; target <= 0.3 s added)")

        fsx = os.path.join(tmp, "fsx")
        write_digits(fsx)
        cfg = os.path.join(tmp, "local.yaml")
        with open(cfg, "w") as f:
            json.dump({"mounts": {"fsx": fsx}, "store": store}, f)  # JSON is YAML
        cli = [sys.executable, "-m", "kubesage.cli", "run", "pipelines/image_classification.py",
               "--config", cfg, "--json"]
        start = time.perf_counter()
        subprocess.run(cli, cwd=ROOT, check=True, capture_output=True)
        first = time.perf_counter() - start
        cached = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            proc = subprocess.run(cli, cwd=ROOT, check=True, capture_output=True, text=True)
            cached.append(time.perf_counter() - start)
            assert all(s["cached"] for s in json.loads(proc.stdout)["steps"])
        t_cached = statistics.median(cached)
        print(f"reference pipeline: first run {first:.2f} s, fully cached re-run {t_cached:.3f} s "
              f"from a cold CLI ({t_cached / first:.3f} of the first run; target <= 1 s)")
        if not args.skip_kfp:
            kfp_local_versus_kubesage(tmp, fsx, pipe, args)


_CHAIN_IN = """
import io, os, sys, tempfile, time
sys.path[:0] = [sys.argv[1], os.path.join(sys.argv[1], "benchmarks")]
import orchestration as o
try:
    from kubesage.config.local import LocalConfig
    from kubesage.targets.local.runner import runner_for
except ImportError:  # the layouts before kubesage.config
    try:
        from kubesage.targets.local.config import LocalConfig
        from kubesage.targets.local.runner import runner_for
    except ImportError:
        from kubesage.local.config import LocalConfig
        from kubesage.local.runner import runner_for
with tempfile.TemporaryDirectory() as tmp:
    pipe = o.chain(int(sys.argv[2]))
    runner_for("docker", LocalConfig(store=tmp), sys.argv[1], log=io.StringIO()).run(pipe)
    start = time.perf_counter()
    for i in range(int(sys.argv[3])):
        config = LocalConfig(store=os.path.join(tmp, str(i)), parallelism=4)
        record = runner_for("docker", config, sys.argv[1], log=io.StringIO()).run(pipe)
        assert record.status == "succeeded"
    print((time.perf_counter() - start) / int(sys.argv[3]) / int(sys.argv[2]))
"""


def against(other: str, args: argparse.Namespace) -> None:
    """Time per step of the chain in this checkout and in ``other``, in turns."""
    times: dict[str, list[float]] = {ROOT: [], other: []}
    for _ in range(args.repeats):
        for root in (other, ROOT):
            proc = subprocess.run([sys.executable, "-c", _CHAIN_IN, root, str(args.steps), "3"],
                                  cwd=root, check=True, capture_output=True, text=True)
            times[root].append(float(proc.stdout.split()[-1]))
    ours, theirs = statistics.median(times[ROOT]), statistics.median(times[other])
    print(f"per step, chain of {args.steps} probe steps: {other} {theirs:.3f} s, this checkout "
          f"{ours:.3f} s ({ours / theirs:.2f}x; {args.repeats} turns each)")


def kfp_local_versus_kubesage(tmp: str, fsx: str, pipe, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    """kfp.local DockerRunner on the compiled YAML against kubesage's Docker runner, no caching."""
    from kubesage.project.loader import load_pipeline
    from kubesage.targets.kfp.compiler import compile_to_file
    from kubesage.targets.kfp.config import KfpConfig
    from kubesage.targets.kfp.local_run import docker_runner, execute_compiled

    # No registry and no Kubernetes settings: the YAML kfp.local can run here (claims are ignored).
    # The same work on both sides: register writes to an MLflow registry in SQLite, as it does
    # in kubesage's local runs (without a tracking URI it would only write its model card).
    config = KfpConfig(volumes={"fsx": "fsx"}, env={
        "MLFLOW_TRACKING_URI": "sqlite:////mlflow/mlflow.db",
        "KUBESAGE_MLFLOW_ARTIFACTS": "/mlflow/artifacts"})
    reference = load_pipeline(os.path.join(ROOT, "pipelines", "image_classification.py"))[0].build()
    runner = docker_runner("benchmark", {"fsx": ("/fsx", fsx)},
                           {"/mlflow": os.path.join(tmp, "kfp-mlflow")})
    results = {}
    for label, graph, repeats in (("chain", pipe, args.repeats), ("reference", reference, 1)):
        compiled = compile_to_file(graph, os.path.join(tmp, f"{graph.name}.yaml"), config)
        values = graph.resolve_parameters({})
        kfp_times, ours, cold = [], [], []
        for i in range(repeats):
            out = os.path.join(tmp, "kfp-local", f"{label}-{i}")
            os.makedirs(out)
            start = time.perf_counter()
            execute_compiled(compiled, values, runner, out, io.StringIO(), os.path.join(out, "log"))
            kfp_times.append(time.perf_counter() - start)
            # a fresh store each time: kubesage runs every step, as kfp.local does; with warm
            # starts (the default) and without them (every step's container started in its turn)
            for warm, times in ((True, ours), (False, cold)):
                fresh = LocalConfig(mounts={"fsx": fsx}, parallelism=4, warm_start=warm,
                                    store=os.path.join(tmp, f"fresh-{label}-{i}-{warm}"))
                ours_runner = runner_for("docker", fresh, ROOT, log=io.StringIO())
                start = time.perf_counter()
                record = ours_runner.run(graph)
                times.append(time.perf_counter() - start)
                assert record.status == "succeeded", record.to_dict()
        print(f"{label}: kubesage without warm starts {statistics.median(cold):.2f} s")
        results[label] = (statistics.median(kfp_times), statistics.median(ours))
    # Re-runs with each side's own step cache on (kfp.local's cache, kubesage's run store), warm.
    compiled = os.path.join(tmp, f"{reference.name}.yaml")
    cache_root = os.path.join(tmp, "kfp-cache")
    cached_kfp, cached_ours = [], []
    store = LocalConfig(mounts={"fsx": fsx}, store=os.path.join(tmp, "fresh-reference-0-True"),
                        parallelism=4)
    ours_runner = runner_for("docker", store, ROOT, log=io.StringIO())
    for i in range(args.repeats + 1):
        out = os.path.join(tmp, "kfp-local", f"cached-{i}")
        os.makedirs(out)
        start = time.perf_counter()
        execute_compiled(compiled, reference.resolve_parameters({}), runner, out, io.StringIO(),
                         os.path.join(out, "log"), cache_root=cache_root)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        record = ours_runner.run(reference)
        if i:  # the first round fills both caches (an image rebuilt meanwhile would miss)
            cached_kfp.append(elapsed)
            cached_ours.append(time.perf_counter() - start)
            assert all(s.cached for s in record.steps if s.status == "succeeded")
    results["cached"] = (statistics.median(cached_kfp), statistics.median(cached_ours))
    names = {"chain": f"chain of {args.steps} probe steps, uncached",
             "reference": "reference pipeline, uncached",
             "cached": "reference pipeline, re-run with each side's step cache"}
    for label, (t_kfp, t_ours) in results.items():
        print(f"{names[label]}: kfp.local DockerRunner {t_kfp:.2f} s, kubesage {t_ours:.2f} s "
              f"(kubesage {t_kfp / t_ours:.2f}x faster; target >= 2x)")


if __name__ == "__main__":
    main()
