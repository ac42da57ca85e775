"""Orchestration overhead of the local Docker runner, measured against bare ``docker run``.

1. Time added per step: a chain of N ``probe`` steps (cache off) run by kubesage, against N bare
   ``docker run --rm`` of the same image doing the same work (the same task file).
2. A fully cached re-run of the reference pipeline from a cold CLI, against its first run.

    .venv/bin/python benchmarks/orchestration.py [--steps 5] [--repeats 3]

Targets: <= 0.3 s added per step; cached re-run <= 1 s.
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

from components.diagnostics import probe  # noqa: E402
from kubesage import pipeline  # noqa: E402
from kubesage.local.config import LocalConfig  # noqa: E402
from kubesage.local.runner import runner_for  # noqa: E402
from kubesage.runtime.invoke import Invocation  # noqa: E402
from kubesage.runtime.local import task_file  # noqa: E402
from kubesage.sample_data import write_digits  # noqa: E402

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
        json.dump(task_file("components.diagnostics:probe",
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
