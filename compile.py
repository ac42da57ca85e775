#!/usr/bin/env python3
"""Compile a pipeline: ``python compile.py PIPELINE --target {kfp,sagemaker} -o FILE``."""

import sys

from kubesage.cli import main

if __name__ == "__main__":
    sys.exit(main(["compile", *sys.argv[1:]]))
