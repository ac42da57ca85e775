"""The per-client pipeline: one model per client, fanned out, each registered under its name."""

from __future__ import annotations

from typing import Any

import pytest

from kubesage.config.local import load_local_config
from tests.conftest import run_json, write_config

pytestmark = pytest.mark.docker


def test_per_client_pipeline_registers_one_model_per_client(
    docker_client: Any, tmp_path, fsx_root: str
) -> None:
    from mlflow import MlflowClient

    config = write_config(str(tmp_path / "l.yaml"), fsx_root, str(tmp_path / "s"))
    record = run_json("run", "pipelines/per_client.py", "--config", config,
                      "--param", "threshold=0.5")
    assert record["status"] == "succeeded", record["_stderr"]
    registered = sorted(s["returns"]["output"] for s in record["steps"] if s["task"] == "register")
    assert registered == ["digits-client-a/1", "digits-client-b/1", "digits-client-c/1"]
    per_client = {s["name"]: s["metrics"]["accuracy"] for s in record["steps"]
                  if s["task"] == "evaluate"}
    assert len(per_client) == 3 and min(per_client.values()) >= 0.5
    client = MlflowClient(load_local_config(config).tracking_uri)
    names = sorted(m.name for m in client.search_registered_models())
    assert names == ["digits-client-a", "digits-client-b", "digits-client-c"]
    # each client's model was trained on that client's images only
    counts = {s["name"]: s["outputs"]["data"]["metadata"]["train"] + s["outputs"]["data"]
              ["metadata"]["val"] for s in record["steps"] if s["task"] == "preprocess"}
    assert sorted(counts.values()) == [599, 599, 599]
    # and each registered model predicted its own client's validation split
    predicted = {s["name"]: s["outputs"]["predictions"]["metadata"]["count"]
                 for s in record["steps"] if s["task"] == "predict"}
    val = {s["name"]: s["outputs"]["data"]["metadata"]["val"] for s in record["steps"]
           if s["task"] == "preprocess"}
    assert sorted(predicted.values()) == sorted(val.values()) and len(predicted) == 3
