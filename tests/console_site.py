"""A console to test against: a run store with real runs (the subprocess runner on the probe
pipelines) and records written straight into it (curves to compare, a hostile tag, artifacts to
look at), served by ``kubesage ui`` in its own process; and headless Chromium (Debian's
``chromium``) driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubesage.runs.record import RunRecord, StepRecord
from kubesage.store import RunStore
from tests.conftest import KUBESAGE, REPO
from tests.servers import free_port

TOKEN = "console-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
HOSTILE_TAG = "<script>window.pwned = 1</script>"


@dataclass
class Site:
    """A running console and what its store holds."""

    url: str
    config: str
    store: RunStore
    folder: str
    runs: dict[str, str] = field(default_factory=dict)  # what -> run ID
    process: Any = None

    def get(self, path: str, method: str = "GET", headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int, str]:
        """Status and body of one request (an error status is returned, not raised)."""
        request = urllib.request.Request(self.url + path, method=method, data=data,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO}


def run_probe(config: str, pipeline: str, *extra: str) -> dict[str, Any]:
    proc = subprocess.run([*KUBESAGE, "run", pipeline, "--runner", "subprocess", "--config",
                           config, "--json", *extra], cwd=REPO, env=environment(),
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def curves_run(run_id: str, lr: float, losses: list[float], started: float) -> RunRecord:
    """A finished training run with a learning curve, as a record."""
    record = RunRecord(run_id, "training", "", "h" * 64, "docker", status="succeeded",
                       parameters={"lr": lr, "epochs": len(losses)}, started=started,
                       ended=started + 30, user="ana", data={"fsx": "fp-" + "d" * 20})
    train = StepRecord("train", "train", "train", "1.2.0", "kubesage/torch", status="succeeded",
                       started=started + 1, ended=started + 20, metrics={"loss": losses[-1]},
                       series={"loss": [[i + 1, v] for i, v in enumerate(losses)]},
                       outputs={"model": {"path": "/nowhere", "sha256": f"model-{run_id}",
                                          "type": "Model"}})
    record.steps = [train]
    return record


def artifacts_run(folder: str, started: float) -> RunRecord:
    """A run whose evaluate step left a confusion matrix, a report, a picture and JSON."""
    report = os.path.join(folder, "report")
    os.makedirs(report, exist_ok=True)
    with open(os.path.join(report, "confusion_matrix.json"), "w") as f:
        json.dump({"classes": ["cat", "dog"], "matrix": [[8, 2], [1, 9]]}, f)
    with open(os.path.join(report, "report.md"), "w") as f:
        f.write("# Report\n\naccuracy **0.85**\n\n<img src=x onerror=alert(1)>\n")
    with open(os.path.join(report, "evaluation.json"), "w") as f:
        f.write('{"metrics":{"accuracy":{"value":0.85}}}')
    shutil.copyfile(_png(folder), os.path.join(report, "plot.png"))
    record = RunRecord("evaluated-1", "evaluation", "", "h" * 64, "docker", status="succeeded",
                       started=started, ended=started + 5)
    record.steps = [StepRecord("evaluate", "evaluate", "evaluate", "1.0.0", "img",
                               status="succeeded", started=started, ended=started + 4,
                               outputs={"report": {"path": report, "sha256": "r" * 64,
                                                   "type": "Dataset"}})]
    return record


def _png(folder: str) -> str:
    """A 4x4 PNG, written with PIL."""
    from PIL import Image

    path = os.path.join(folder, "pixel.png")
    Image.new("RGB", (4, 4), (200, 30, 30)).save(path)
    return path


def make_site(folder: str, fsx: str) -> Site:
    """The store, its runs, and ``kubesage ui`` serving it."""
    from tests.conftest import write_config

    config = write_config(os.path.join(folder, "local.yaml"), fsx, os.path.join(folder, "store"))
    site = Site("", config, RunStore(os.path.join(folder, "store")), folder)
    site.runs["fan-out"] = run_probe(config, "tests/pipelines/probes.py:fan-out")["run_id"]
    site.runs["cached"] = run_probe(config, "tests/pipelines/probes.py:fan-out")["run_id"]
    now = time.time()
    for name, lr, losses in (("curves-a", 0.1, [0.9, 0.6, 0.4]), ("curves-b", 0.3, [0.8, 0.5, 0.3])):
        site.store.save(curves_run(name, lr, losses, now - 100))
        site.runs[name] = name
    hostile = RunRecord("hostile-1", "p", "", "h", "docker", status="failed", started=now - 50,
                        tags={"note": HOSTILE_TAG})
    site.store.save(hostile)
    site.store.save(artifacts_run(os.path.join(folder, "outputs"), now - 40))
    site.runs.update(hostile="hostile-1", evaluated="evaluated-1")
    return start(site)


def start(site: Site, *extra: str, env: dict[str, str] | None = None) -> Site:
    port = free_port()
    site.url = f"http://127.0.0.1:{port}"
    site.process = subprocess.Popen(
        [*KUBESAGE, "ui", "--config", site.config, "--port", str(port), *extra], cwd=REPO,
        env={**environment(), "KUBESAGE_CONSOLE_TOKEN": TOKEN, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if site.process.poll() is not None:
            pytest.fail(f"kubesage ui exited: {site.process.stderr.read()}")
        try:
            if site.get("/healthz")[0] == 200:
                return site
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail("kubesage ui did not answer within 60 s")


def stop(site: Site) -> None:
    site.process.terminate()
    site.process.wait(timeout=30)


def chromium() -> Any:
    """Playwright and Debian's headless Chromium (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed; run scripts/setup.sh (it installs it)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    return playwright, browser
