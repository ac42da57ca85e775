"""``python -m kubesage.runtime CONTRACT ARGS...``: one module per contract, each with main()."""

from __future__ import annotations

import importlib
import sys

# local: task file in, result file out. Target packages add theirs (kfp, sagemaker_*).
CONTRACTS = ("local", "kfp", "sagemaker_processing", "sagemaker_training")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "train":  # SageMaker starts training images as `IMAGE train`
        argv = ["sagemaker_training", *argv[1:]]
    if not argv or argv[0] not in CONTRACTS:
        print(f"usage: python -m kubesage.runtime {{{','.join(CONTRACTS)}}} ARGS...",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"kubesage.runtime.{argv[0]}")
    module.main(*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
