"""Screenshots of the console's main pages, from the demo's runs, into docs/ (the README shows
them), so they stay current:

    make demo                                   # a run of the reference pipeline
    .venv/bin/kubesage run pipelines/image_classification.py --param epochs=4   # one to compare
    .venv/bin/python scripts/screenshots.py [--config config/local.yaml] [--out docs]

``kubesage ui`` serves the store of ``--config``; Debian's headless chromium (Playwright) takes
the pictures: the runs list, the newest reference run's page, its evaluation's confusion matrix,
the compare page of its two newest runs, and its model's lineage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PIPELINE = "image-classification"
WIDTH = 1360


def start(config: str | None) -> tuple[subprocess.Popen[bytes], str]:
    from tests.servers import free_port

    port = free_port()
    command = [sys.executable, "-m", "kubesage.cli", "ui", "--port", str(port)]
    proc = subprocess.Popen(command + (["--config", config] if config else []), cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("kubesage ui did not start")


def shoot(page: Any, url: str, path: str, full: bool = False, wait: str = "") -> None:
    page.goto(url, wait_until="load")
    if wait:
        page.locator(wait).first.wait_for()
    page.wait_for_timeout(400)
    page.screenshot(path=path, full_page=full)
    print(f"wrote {os.path.relpath(path, ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", help="local config whose store holds the demo's runs")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from kubesage.targets import base as targets

    store = targets.get("local").workspace(args.config).store
    runs = [r for r in store.list(limit=20, pipeline=PIPELINE) if r.status == "succeeded"]
    if not runs:
        raise SystemExit(f"no succeeded run of {PIPELINE} in {store.location}: run 'make demo'")
    newest = runs[0]
    evaluate = next(s for s in newest.steps if s.component == "evaluate")
    model = next((o["sha256"] for s in newest.steps for n, o in s.outputs.items()
                  if n == "model" and o.get("sha256")), "")
    os.makedirs(args.out, exist_ok=True)
    proc, url = start(args.config)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": WIDTH, "height": 760})
            out = args.out
            shoot(page, url + "/", os.path.join(out, "console-runs.png"))
            shoot(page, f"{url}/runs/{newest.run_id}", os.path.join(out, "console-run.png"),
                  full=True, wait=".chart canvas")
            shoot(page, f"{url}/runs/{newest.run_id}/artifacts/{evaluate.name}/report/view"
                  "?path=confusion_matrix.json", os.path.join(out, "console-confusion.png"))
            if len(runs) > 1:
                shoot(page, f"{url}/compare?run={runs[0].run_id}&run={runs[1].run_id}",
                      os.path.join(out, "console-compare.png"), full=True, wait=".chart canvas")
            if model:
                shoot(page, f"{url}/lineage?model={model}", os.path.join(out, "console-lineage.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
