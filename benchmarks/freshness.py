"""What it costs that a run always runs the working tree's code: the time a code-only change adds.

A project made by ``kubesage init`` (one image on kubesage's runtime base image); its example
pipeline run from a cold CLI, in turns: with the code unchanged since the image was built (the
freshness check only), and right after an edit to a component (the check, then a rebuild of the
image's code layer). The difference is what an edit costs; the target is 3 s or less.

    .venv/bin/python benchmarks/freshness.py [--repeats 5]
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
sys.path.insert(0, ROOT)

from kubesage.project.scaffold import init_project  # noqa: E402


def run(project: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kubesage.cli", "run", "pipelines/example.py",
                           "--no-cache"], cwd=project, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = os.path.join(tmp, "bench-team")
        init_project(project)
        run(project)  # the first build (the runtime base image and the project's image)
        component = os.path.join(project, "components", "text.py")
        unchanged, edited = [], []
        for i in range(args.repeats):
            took, err = run(project)
            assert "rebuilding" not in err
            unchanged.append(took)
            with open(component, "a") as f:
                f.write(f"\n# edit {i}\n")  # a code-only change
            took, err = run(project)
            assert "rebuilding its code layer" in err, err
            edited.append(took)
        same, changed = statistics.median(unchanged), statistics.median(edited)
        print(f"example pipeline from a cold CLI: code unchanged {same:.2f} s, after a code-only "
              f"edit {changed:.2f} s ({changed / same:.2f}x): an edit adds {changed - same:.2f} s "
              f"(target <= 3 s; {args.repeats} turns each)")


if __name__ == "__main__":
    main()
