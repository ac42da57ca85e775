"""``kubesage build``, ``compile`` and ``validate``: images, compiled files and their checks."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.project.loader import load_pipeline, project_root
from kubesage.targets import base as targets


def cmd_build(args: argparse.Namespace) -> int:
    from kubesage.docker_engine.images import build_and_push

    if args.push and not args.target:
        raise KubesageError("--push needs --target kfp|sagemaker: the registry is in that "
                            "target's config")
    registry = (None if not args.push else
                lambda refs: targets.get(args.target).registry_refs(refs, args.config))
    built = build_and_push(project_root(os.getcwd()), tag=args.tag, base=args.base,
                           wheelhouse=args.wheelhouse, only=args.only or None,
                           registry_refs=registry,
                           on_line=lambda line: print(line, file=sys.stderr))
    for ref, image in built.items():
        print(f"{ref} {image}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    definition, path = load_pipeline(args.pipeline)
    pipeline = definition.build()  # definition errors come first, whatever the target
    if pipeline.artifacts:
        raise targets.Unsupported(
            f"'{pipeline.name}' is a component on its own; it runs with 'kubesage run', and "
            "compiles as a step of a pipeline that calls it")
    target = targets.get(args.target)
    target.compile(pipeline, args.output, args.config, path)
    print(f"{args.output}: {pipeline.name} compiled for {args.target}", file=sys.stderr)
    if args.explain:  # which steps share a job, and why (kubesage.plan.fusion)
        print(target.explain(pipeline, args.config), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if os.path.splitext(args.file.partition(":")[0])[1].lower() == ".py":
        definition, _ = load_pipeline(args.file)
        pipeline = definition.build()
        print(f"{args.file}: pipeline '{pipeline.name}' is valid ({len(pipeline.tasks)} tasks)")
        return 0
    print(targets.for_file(args.file).validate(args.file, args.config))
    return 0


def add_parsers(sub: Any) -> None:
    build = sub.add_parser("build", help="build the images under containers/")
    build.add_argument("--tag", default="latest")
    build.add_argument("--base", help="base image (default: the one given before, remembered; "
                       "else the Dockerfile's, python:3.11-slim)")
    build.add_argument("--wheelhouse", help="folder of wheels to install from instead of PyPI "
                       "(remembered, like --base)")
    build.add_argument("--only", action="append", default=[], metavar="IMAGE")
    build.add_argument("--push", action="store_true",
                       help="push the images to the registry of --target's config, by content tag")
    build.add_argument("--target", help="kfp or sagemaker: whose registry --push pushes to")
    build.add_argument("--config", help="that target's config (default: config/<target>.yaml)")
    build.set_defaults(func=cmd_build)

    comp = sub.add_parser("compile", help="compile a pipeline for a target")
    comp.add_argument("pipeline")
    comp.add_argument("--target", required=True, help=", ".join(targets.names()))
    comp.add_argument("-o", "--output", required=True)
    comp.add_argument("--config", help="target config (default: config/<target>.yaml)")
    comp.add_argument("--explain", action="store_true",
                      help="print which steps share a job and why, jobs and pods before and after, "
                           "and the projected wall time saved")
    comp.set_defaults(func=cmd_compile)

    val = sub.add_parser("validate", help="check a pipeline (.py) or a compiled file (.yaml, .json)")
    val.add_argument("file")
    val.add_argument("--config", help="target config of a compiled file (default: "
                     "config/<target>.yaml): the region SageMaker instance types must be offered in")
    val.set_defaults(func=cmd_validate)
