"""A run store on a small file system (a tmpfs with a size limit) that a run fills: the run
fails with a clear error, leaves no cache entry and no artifact that looks complete, and the
next run on the same store works."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import run_cli, write_config

pytestmark = pytest.mark.docker


@pytest.fixture
def small_disk(tmp_path) -> Iterator[str]:
    """A 16 MB tmpfs, mounted for the test (the tests run as root, as set-up does)."""
    folder = tmp_path / "small"
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"mounting a tmpfs needs root: {proc.stderr}"
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_run_that_fills_its_disk_fails_cleanly(small_disk: str, fsx_root: str,
                                                 docker_client: Any) -> None:
    store = os.path.join(small_disk, "store")
    config = write_config(os.path.join(small_disk, "..", "local.yaml"), fsx_root, store)
    full = run_cli("run", "tests/pipelines/probes.py:fills-the-disk", "--param", "megabytes=64",
                   "--config", config, "--json")
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert "No space left on device" in full.stderr
    assert "point the target config's store at a bigger disk" in full.stderr
    record = json.loads(full.stdout)
    assert record["status"] == "failed"
    assert [s["status"] for s in record["steps"]] == ["failed", "not_run"]
    db = sqlite3.connect(os.path.join(store, "runs.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM cache").fetchone()[0] == 0  # nothing cached
    leftovers = [d for d, _, _ in os.walk(os.path.join(store, "artifacts"))
                 if os.path.basename(d) == "data"]
    assert leftovers == []  # no folder that looks like a finished artifact
    # the failed step's partial output is gone: the disk is free again for the next run
    again = run_cli("run", "tests/pipelines/probes.py:fills-the-disk", "--param", "megabytes=2",
                    "--config", config, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["status"] == "succeeded"
