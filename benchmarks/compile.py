"""Compile time of the reference pipeline from a cold CLI, per target.

Each target is timed as ``kubesage compile pipelines/image_classification.py --target T -o F``
in a fresh process (median of --repeats), against the cold import of that target's SDK alone in
the same run (``python -c "import kfp.compiler"``), so the ratio shows what kubesage adds.

    .venv/bin/python benchmarks/compile.py [--repeats 3] [--target kfp --target sagemaker]

Target: <= 3 s each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK_IMPORT = {
    "kfp": "import kfp.compiler, kfp.kubernetes",
    "sagemaker": "import os; os.environ.setdefault('AWS_DEFAULT_REGION', 'us-east-1'); "
                 "import sagemaker.mlops.workflow.pipeline",
}
SUFFIX = {"kfp": ".yaml", "sagemaker": ".json"}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", action="append", choices=sorted(SDK_IMPORT))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.target or sorted(SDK_IMPORT):
            out = os.path.join(tmp, "pipeline" + SUFFIX[target])
            compile_cmd = [sys.executable, "-m", "kubesage.cli", "compile",
                           "pipelines/image_classification.py", "--target", target, "-o", out]
            timed(compile_cmd)  # warm the page cache, as a second invocation would find it
            ours = statistics.median(timed(compile_cmd) for _ in range(args.repeats))
            sdk = statistics.median(timed([sys.executable, "-c", SDK_IMPORT[target]])
                                    for _ in range(args.repeats))
            print(f"{target}: cold CLI compile {ours:.2f} s (target <= 3 s); importing the SDK "
                  f"alone {sdk:.2f} s; compile / SDK import = {ours / sdk:.2f}")


if __name__ == "__main__":
    main()
