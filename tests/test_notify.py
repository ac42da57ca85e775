"""Webhook notifications, against real HTTP servers on loopback."""

from __future__ import annotations

import http.server
import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kubesage.config.local import LocalConfig
from kubesage.project.loader import load_pipeline
from kubesage.targets import RunOptions
from kubesage.targets.local.runner import runner_for
from tests.conftest import REPO


class _Hook(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _Failing(_Hook):
    status = 500


def _serve(handler: type) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    server.shutdown()


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _serve(_Hook)


@pytest.fixture
def failing_hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _serve(_Failing)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/nobody"


def test_state_changes_reach_webhooks_and_failing_ones_do_not_fail_the_run(
    tmp_path, hook, failing_hook
) -> None:
    url, received = hook
    bad_url, bad_received = failing_hook
    log = io.StringIO()
    config = LocalConfig(store=str(tmp_path / "s"),
                         webhooks=[bad_url, _closed_port_url(), url])
    pipe = load_pipeline(os.path.join(REPO, "tests/pipelines/probes.py:fan_out"))[0].build()
    runner = runner_for("subprocess", config, REPO, log=log)
    record = runner.run(pipe, RunOptions(params={"clients": '["x"]'}))
    assert record.status == "succeeded"
    events = [m["kubesage"] for m in received]
    assert events[0] == {"run_id": record.run_id, "pipeline": "fan-out", "status": "running",
                         "metrics": {}}
    assert events[-1]["status"] == "succeeded" and "step" not in events[-1]
    finals = {e["step"]: e["status"] for e in events if "step" in e and e["status"] != "running"}
    assert finals == {"probe": "succeeded", "per-client[0]": "succeeded", "score": "succeeded",
                      "gated": "skipped"}
    assert all(m["text"].startswith((":", "fan-out")) and record.run_id in m["text"]
               for m in received)
    assert len(bad_received) == len(received)  # the failing hook was tried every time
    assert log.getvalue().count("webhook") == 2  # each broken webhook reported once


def test_webhooks_must_be_urls(tmp_path) -> None:
    from kubesage.config.local import ConfigError, load_local_config

    path = tmp_path / "l.yaml"
    path.write_text("webhooks: [slack]\n")
    with pytest.raises(ConfigError, match=r"'webhooks\[0\]' is malformed: 'slack'; "
                       r"expected something like https://"):
        load_local_config(str(path))
