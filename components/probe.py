"""probe: a tiny component that checks a target can run kubesage images end to end.

It writes an artifact, can sleep and can fail on purpose, so the same image that trains models
also serves smoke tests of a cluster, failure handling and orchestration benchmarks.
"""

from __future__ import annotations

import sys
import time

from kubesage import Artifact, Output, component


@component(version="1.0.0")
def probe(
    result: Output[Artifact],
    message: str = "ok",
    seconds: float = 0.0,
    exit_code: int = 0,
) -> str:
    """Write ``message`` to ``result/message.txt`` after ``seconds``; exit with ``exit_code``."""
    with open(result.file("message.txt"), "w") as f:
        f.write(message)
    print(f"probe: {message}", flush=True)
    if seconds:
        time.sleep(seconds)
    if exit_code:
        print(f"probe: failing on purpose with exit code {exit_code}", flush=True)
        sys.exit(exit_code)
    return message
