"""The conformance session: every selected (feature, path) run once, in parallel, results saved.

The runs start when the first conformance test asks for one: all pairs the selected tests need
(and the docker reference of each of their features) go to a pool of
``KUBESAGE_CONFORMANCE_WORKERS`` (default 4) threads, each running ``kubesage run`` in its own
process with a fresh store. Every test records its (feature, path) outcome; at the end of the
session they are written to ``KUBESAGE_CONFORMANCE_RESULTS`` (default
``.cache/conformance/results.json``), which ``python -m tests.conformance.matrix`` renders.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.conformance import harness

RESULTS = os.environ.get("KUBESAGE_CONFORMANCE_RESULTS") or os.path.join(
    harness.REPO, ".cache", "conformance", "results.json")
WORKERS = int(os.environ.get("KUBESAGE_CONFORMANCE_WORKERS", "4"))
# The image the runs use (tagged for this session); another build of the code can be checked.
IMAGE = os.environ.get("KUBESAGE_CONFORMANCE_IMAGE", "kubesage/torch:latest")


class Conformance:
    """Outcomes of (feature, path) runs, started on demand, and the verdict of each test."""

    def __init__(self, root: str, fsx: str, image_tag: str, workers: int) -> None:
        self.root = root
        self.fsx = fsx
        self.image_tag = image_tag
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="conformance")
        self.futures: dict[tuple[str, str], Future[harness.Outcome]] = {}
        self.verdicts: dict[tuple[str, str], str] = {}
        self.details: dict[tuple[str, str], dict[str, Any]] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def start(self, pairs: list[tuple[str, str]]) -> None:
        """Queue ``pairs`` (the docker references first, then the long ones), each at most once."""
        ordered = sorted(set(pairs), key=lambda p: (
            p[1] != harness.REFERENCE, p[0] not in harness.SLOW_FEATURES, not p[1].startswith("sagemaker"),
            p[0], p[1]))
        with self._lock:
            for feature, path in ordered:
                if (feature, path) not in self.futures:
                    folder = os.path.join(self.root, feature, path)
                    self.futures[(feature, path)] = self.pool.submit(
                        harness.run_feature, feature, path, folder, self.fsx, self.image_tag)

    def outcome(self, feature: str, path: str) -> harness.Outcome:
        self.start([(feature, path)])
        return self.futures[(feature, path)].result()

    def record(self, feature: str, path: str, verdict: str, outcome: harness.Outcome,
               differences: list[str] | None = None) -> None:
        """The verdict of one test, with what explains it (all differences, stderr's tail)."""
        self.verdicts[(feature, path)] = verdict
        self.details[(feature, path)] = {
            "wall_s": outcome.wall_s,
            "exit_codes": [a.returncode for a in outcome.attempts],
            "run_ids": [r.get("run_id") for r in outcome.records],
            "differences": differences or [],
            "stderr_tail": outcome.attempts[-1].stderr[-1500:] if outcome.attempts else "",
        }

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.verdicts:
            harness.write_results(RESULTS, self.verdicts, self.details,
                                  wall_s=time.monotonic() - self.started)


def _selected_pairs(session: pytest.Session) -> list[tuple[str, str]]:
    """The (feature, path) pairs of the conformance tests this session runs, with their
    references."""
    pairs = []
    features = set(harness.features())
    for item in session.items:
        module = getattr(getattr(item, "module", None), "__name__", "")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (module.startswith("tests.conformance.") and params.get("feature") in features
                and params.get("path") in harness.PATHS):
            pairs += [(params["feature"], params["path"]), (params["feature"], harness.REFERENCE)]
    return pairs


@pytest.fixture(scope="session")
def conformance_image_tag(docker_client: Any) -> Iterator[str]:
    """A tag of kubesage/torch:latest (``KUBESAGE_CONFORMANCE_IMAGE``) of this session's own: a
    rebuild by someone else on the same engine mid-session must not change the image under the
    runs (or their cache keys)."""
    tag = f"conformance-{secrets.token_hex(3)}"
    docker_client.images.get(IMAGE).tag("kubesage/torch", tag)
    yield tag
    try:
        docker_client.images.remove(f"kubesage/torch:{tag}", noprune=True)
    except Exception:  # a leftover tag is harmless
        pass


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                fsx_root: str, conformance_image_tag: str) -> Iterator[Conformance]:
    suite = Conformance(str(tmp_path_factory.mktemp("conformance")), fsx_root,
                        conformance_image_tag, WORKERS)
    suite.start(_selected_pairs(request.session))
    yield suite
    suite.close()
    if suite.verdicts:
        print(f"\nconformance results: {RESULTS}")
