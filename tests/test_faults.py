"""The fault campaign's short form (benchmarks/faults.py, one trial per class; the full campaign's
results are in BENCHMARKS.md): a CLI kill, a training-container kill (one or two nodes), a Docker
engine restart, 4 concurrent runs, and a kill of the CLI or of the PostgreSQL server with a team
store (PostgreSQL and S3), each followed by the campaign's checks (no leftovers, no
run left ``running``, an intact store and cache, the next run succeeds, resumed training ends
with the uninterrupted run's weights)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.server, pytest.mark.last]


def test_the_short_fault_campaign_survives_every_trial(tmp_path) -> None:
    results = tmp_path / "faults.json"
    proc = subprocess.run([sys.executable, "benchmarks/faults.py", "--trials", "1",
                           "--engine-trials", "1", "--concurrent-trials", "1",
                           "--concurrent-runs", "4",
                           "--store-trials", "1",
                           "--json", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    doc = json.loads(results.read_text())
    trials = doc["trials"]
    by_kind = {k: [t for t in trials if t["kind"] == k] for k in ("cli", "container", "engine",
                                                                   "concurrent", "store")}
    assert [len(v) for v in by_kind.values()] == [1, 1, 1, 1, 1]
    assert all(t["survived"] and not t["problems"] for t in trials)
    interrupted = [t for t in trials if t["interrupted"]]
    assert all(t["identical"] for t in interrupted)
    assert any(t["interrupted"] for t in by_kind["container"])  # training was really cut off
    assert "| cli | 1 | 1/1 |" in proc.stdout
