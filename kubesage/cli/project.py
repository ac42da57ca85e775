"""``kubesage init`` and ``sample-data``: a team's new project, and the built-in image set."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_init(args: argparse.Namespace) -> int:
    from kubesage.project.scaffold import init_project

    files = init_project(args.dir)
    print(f"{args.dir}: a new kubesage project ({len(files)} files); next: cd {args.dir} && "
          "kubesage run pipelines/example.py")
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from kubesage.project.sample_data import write_digits

    print(write_digits(args.dest))
    return 0


def add_parsers(sub: Any) -> None:
    init = sub.add_parser("init", help="write a new project: components, a pipeline, an image, "
                          "target configs, a test")
    init.add_argument("dir", help="a new (or empty) folder")
    init.set_defaults(func=cmd_init)

    sample = sub.add_parser("sample-data", help="write the built-in sample image set")
    sample.add_argument("dest", nargs="?", default="data/fsx")
    sample.set_defaults(func=cmd_sample_data)
