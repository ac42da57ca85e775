"""Webhook notifications of run and step state changes (Slack-compatible JSON).

Posting happens on a background thread with a short timeout: a slow or failing webhook delays
nothing and never fails a run; problems are reported once on the run's log.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesage.runs.record import RunRecord, StepRecord

ICONS = {"running": ":arrow_forward:", "succeeded": ":white_check_mark:", "failed": ":x:",
         "skipped": ":fast_forward:", "not_run": ":white_circle:", "cancelled": ":stop_sign:"}


def redact(text: str) -> str:
    """A webhook URL (or a message holding one) without its path and query, where the tokens
    are (``https://hooks.slack.com/services/T0/B0/xyz`` -> ``https://hooks.slack.com/...``)."""
    import re

    return re.sub(r"(https?://[^/\s?#]+)[^\s'\"]*", r"\1/...", text)


def event(record: RunRecord, step: StepRecord | None = None) -> dict[str, Any]:
    """The event of ``step``'s new state, or of the run's (with its final metrics)."""
    found: dict[str, Any] = {"run_id": record.run_id, "pipeline": record.pipeline,
                             "status": (step or record).status}
    if record.remote:
        found["target"] = record.target  # a service ran it
    if step is not None:
        found.update(step=step.name, cached=step.cached, metrics=step.metrics)
    else:
        found.update(metrics={f"{k}.{m}": v for k, ms in record.metrics.items()
                              for m, v in ms.items() if "per_s" not in m})
    return found


def message(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON posted for ``event``: Slack's ``text`` plus the event itself under ``kubesage``."""
    what = f"step {event['step']}" if event.get("step") else "run"
    cached = " (cached)" if event.get("cached") else ""
    text = (f"{ICONS.get(event['status'], '')} {event['pipeline']} {event['run_id']}: "
            f"{what} {event['status']}{cached}")
    if event.get("metrics"):
        shown = sorted(event["metrics"].items())[:6]
        text += " " + ", ".join(f"{k}={v:.4g}" for k, v in shown)
    return {"text": text.strip(), "username": "kubesage", "kubesage": event}


class Notifier:
    """Posts events to every webhook URL, in order, from one background thread."""

    def __init__(self, webhooks: list[str], warn: Callable[[str], None], timeout: float = 5.0) -> None:
        self.webhooks = list(webhooks)
        self.warn = warn
        self.timeout = timeout
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._failed: set[str] = set()
        self._thread: threading.Thread | None = None
        if self.webhooks:
            self._thread = threading.Thread(target=self._work, daemon=True)
            self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        if self._thread is not None:
            self._queue.put(event)

    def close(self, wait_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``wait_s``), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(wait_s)
            self._thread = None

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            body = json.dumps(message(event)).encode()
            for url in self.webhooks:
                try:
                    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                        resp.read()
                except Exception as e:  # any failure: report once per webhook, carry on
                    if url not in self._failed:
                        self._failed.add(url)
                        self.warn(f"! webhook {redact(url)} failed ({redact(str(e))}); the run "
                                  "goes on")
