"""The console's page loads in Chromium, each against a baseline measured in the same run.

1. The runs list over a store of 100,000 generated runs, against one of 100.   goal <= 1.5x
2. The run page of a 100-item fan-out, against a 5-step run.                    goal <= 2x
3. How long ``kubesage ui`` takes to answer, on each store (goal: a few seconds).

A page load is navigation start to the load event (``PerformanceNavigationTiming``), in Debian's
headless Chromium driven by Playwright, against ``kubesage ui`` in its own process: the median of
``--loads`` loads after one that warms the server (the run page's first load also lays its graph
out with Graphviz; that cold load is printed too). The runs are generated straight into the
store (``benchmarks/store.py:generate``); the run pages' records are the probe ``fan-out``
pipeline's real plan for 100 and for 2 clients (5 steps), every step succeeded.

    .venv/bin/python benchmarks/console.py [--runs 100000] [--loads 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.store import generate  # noqa: E402
from tests.servers import free_port  # noqa: E402

LOAD_MS = ("() => { const n = performance.getEntriesByType('navigation')[0]; "
           "return n.loadEventEnd - n.startTime; }")


def serve(store: str, folder: str) -> tuple[subprocess.Popen[bytes], str, float]:
    """``kubesage ui`` over ``store``: the process, its URL, and seconds until it answered."""
    config = os.path.join(folder, f"ui-{time.time_ns()}.yaml")
    with open(config, "w") as f:
        f.write(f"store: {store}\n" if "://" not in store else f"store: {store}\nhome: {folder}\n")
    port = free_port()
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kubesage.cli", "ui", "--config", config,
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": ROOT})
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return proc, url, time.perf_counter() - began
        except OSError:
            if proc.poll() is not None or time.perf_counter() - began > 120:
                raise SystemExit("kubesage ui did not start") from None
            time.sleep(0.05)


def loads(browser: Any, url: str, count: int) -> tuple[float, float]:
    """The first load's ms and the median of ``count`` more."""
    page = browser.new_page()
    times = []
    for _ in range(count + 1):
        page.goto(url, wait_until="load")
        times.append(float(page.evaluate(LOAD_MS)))
    page.close()
    return times[0], statistics.median(times[1:])


def fan_out_record(run_id: str, clients: int) -> Any:
    """A finished run of the probe ``fan-out`` pipeline over ``clients`` items, as the runner
    records it (its real plan: steps, dependencies, loops and conditions)."""
    from kubesage.plan import Plan
    from kubesage.plan.graph import plan_groups
    from kubesage.runs.lifecycle import plan_steps
    from kubesage.runs.record import RunRecord
    from tests.pipelines.probes import fan_out

    pipeline = fan_out.build()
    values = pipeline.resolve_parameters({"clients": [f"client-{i:03d}" for i in range(clients)]})
    plan = Plan(pipeline, values)
    started = time.time() - 600
    record = RunRecord(run_id, pipeline.name, "", pipeline.digest(), "docker", status="succeeded",
                       parameters=values, started=started, ended=started + 300)
    record.groups = plan_groups(plan)
    record.steps = plan_steps(plan, lambda image: image)
    for i, step in enumerate(record.steps):
        step.status = "skipped" if step.name == "gated" else "succeeded"
        step.started, step.ended = started + i, started + i + 2
        step.metrics = {"score": 0.5 + i / 1000}
        step.outputs = {"result": {"path": f"/runs/{run_id}/{step.name}", "sha256": "a" * 64,
                                   "type": "Artifact"}}
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--loads", type=int, default=15)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from kubesage.store import RunStore

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        results: dict[str, Any] = {}
        for count in (100, args.runs):
            url = f"sqlite:///{tmp}/runs-{count}.db"
            began = time.perf_counter()
            generate(url, count)
            made = time.perf_counter() - began
            if count == 100:  # the run pages live in the small store
                store = RunStore(url)
                store.save(fan_out_record("fan-out-100-items", 100))
                store.save(fan_out_record("fan-out-5-steps", 2))
                store.close()
            proc, base, started = serve(url, tmp)
            try:
                results[count] = (started, loads(browser, base + "/", args.loads))
                if count == 100:
                    for name in ("fan-out-5-steps", "fan-out-100-items"):
                        results[name] = loads(browser, f"{base}/runs/{name}", args.loads)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(f"store of {count} runs generated in {made:.1f} s; kubesage ui answered "
                  f"after {started:.2f} s")
        browser.close()
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    (_, (_, small)), (_, (_, big)) = results[100], results[args.runs]
    print(f"runs list: {small:.0f} ms over 100 runs, {big:.0f} ms over {args.runs} runs "
          f"({big / small:.2f}x; goal <= 1.5x; median of {args.loads} loads)")
    cold5, five = results["fan-out-5-steps"]
    cold100, hundred = results["fan-out-100-items"]
    print(f"run page: {five:.0f} ms for 5 steps, {hundred:.0f} ms for a 100-item fan-out "
          f"(103 steps) ({hundred / five:.2f}x; goal <= 2x); first loads, graph laid out: "
          f"{cold5:.0f} ms and {cold100:.0f} ms ({cold100 / cold5:.2f}x)")


if __name__ == "__main__":
    main()
