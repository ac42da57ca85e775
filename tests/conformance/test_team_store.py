"""The conformance suite once more, on a team's store: each (feature, path) of PAIRS runs with its runs
recorded in a real PostgreSQL server and its artifacts in S3 (moto in server mode), and must
give exactly what the same (feature, path) gives on the embedded SQLite store and local folders:
states, returned values, metrics, artifact bytes, or the same refusal."""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conformance import harness
from tests.servers import PASSWORD, Moto, Postgres

pytestmark = [pytest.mark.docker, pytest.mark.server]

# Every path records through the one run path into the one store interface, so by default each
# feature runs on the local Docker runner and on the compiled SageMaker definition, and the
# store's own features (the cache, artifacts in S3) on every path: 32 of the 72 pairs.
# KUBESAGE_TEAM_CONFORMANCE=all runs every pair.
STORE_FEATURES = ("artifacts", "cached-rerun")
PAIRS = [(f, p) for f in harness.features() for p in harness.PATHS
         if os.environ.get("KUBESAGE_TEAM_CONFORMANCE") == "all"
         or p in ("docker", "sagemaker") or f in STORE_FEATURES]
_POOL = ThreadPoolExecutor(max(1, int(os.environ.get("KUBESAGE_CONFORMANCE_WORKERS", "4"))),
                           thread_name_prefix="team-store")


@pytest.fixture(scope="module")
def team_runs(postgres: Postgres, moto: Moto, conformance: Any,
              tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """Every pair run on the team store, in parallel, each with a database and prefix of its
    own (a fresh store, as on the embedded one)."""
    bucket = f"conformance-{secrets.token_hex(3)}"
    moto.bucket(bucket)
    root = str(tmp_path_factory.mktemp("team-conformance"))
    futures = {}
    for i, (feature, path) in enumerate(PAIRS):
        env = {**moto.environment(), "PGPASSWORD": PASSWORD,
               "KUBESAGE_STORE": postgres.fresh_database(f"conf{os.getpid()}x{i}"),
               "KUBESAGE_ARTIFACTS": f"s3://{bucket}/{feature}/{path}"}
        futures[(feature, path)] = _POOL.submit(
            harness.run_feature, feature, path, os.path.join(root, feature, path),
            conformance.fsx, conformance.image_tag, env)
    return futures


@pytest.mark.parametrize(("feature", "path"), PAIRS, ids=[f"{f}-{p}" for f, p in PAIRS])
def test_a_team_store_gives_what_the_embedded_store_gives(feature: str, path: str,
                                                          team_runs: dict[Any, Any],
                                                          conformance: Any) -> None:
    embedded = conformance.outcome(feature, path)
    team = team_runs[(feature, path)].result()
    if embedded.refused is not None:
        assert team.refused == embedded.refused
        return
    assert team.failure is None, team.failure + "\n" + team.attempts[-1].stderr[-2000:]
    assert embedded.normalized is not None, embedded.failure
    found = harness.differences(embedded, team)
    assert not found, "; ".join(d.summary for d in found)
    uris = [out.get("uri", "") for record in team.records for step in record["steps"]
            for out in step["outputs"].values() if step["status"] == "succeeded"]
    assert all(uri.startswith("s3://") for uri in uris), uris  # published to the team's bucket
