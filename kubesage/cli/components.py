"""``kubesage components``: the shared catalog of published component versions."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from kubesage.catalog import Catalog, Entry, publishable
from kubesage.dsl.interface import ComponentSpec
from kubesage.project.loader import load_component
from kubesage.targets import base as targets


def cmd_components(args: argparse.Namespace) -> int:
    command = {"list": _list, "show": _show, "publish": _publish, "export": _export}
    return command[args.components_command](args)


def _catalog(args: argparse.Namespace) -> Catalog:
    """``--catalog``, else ``$KUBESAGE_CATALOG``, else the team's run store."""
    default = "" if args.catalog else targets.get("local").local_config().store_url
    return Catalog(args.catalog, default=default)


def _newest(catalog: Catalog, ref: str) -> Entry:
    """``NAME@VERSION``, or ``NAME``: its newest version."""
    name, _, version = ref.partition("@")
    versions = catalog.versions(name)
    return catalog.get(name, version or (versions[-1] if versions else "0.0.0"))


def _publish(args: argparse.Namespace) -> int:
    from kubesage.docker_engine.images import local_image_id

    catalog = _catalog(args)
    component = publishable(args.component, args.version)
    image = args.image or local_image_id(targets.get("local").local_config().image(
        component.spec.image))
    entry = catalog.publish(component, image, args.publisher)
    print(f"published {entry.name}@{entry.version} ({entry.image[:19]}) to {catalog.location}")
    return 0


def _list(args: argparse.Namespace) -> int:
    entries = _catalog(args).list()
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=2))
        return 0
    for e in entries:
        summary = e.description.splitlines()[0] if e.description else ""
        print(f"{e.name + '@' + e.version:32} {e.image[:19]:20} {summary}")
    return 0


def _show(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    entry = _newest(catalog, args.ref)
    if args.json:
        print(json.dumps(asdict(entry), indent=2))
        return 0
    print(f"{entry.name}@{entry.version}  image {entry.image}\n  published by "
          f"{entry.publisher}; versions: {', '.join(catalog.versions(entry.name))}\n")
    print(entry.description)
    _print_interface(entry.spec)
    return 0


def _print_interface(spec: ComponentSpec) -> None:
    for p in spec.parameters:
        print(f"  param  {p.name}: {p.type}" + ("" if p.required else f" = {p.default!r}"))
    for a in spec.inputs:
        print(f"  input  {a.name}: {a.type}")
    for o in list(spec.outputs) + list(spec.returns):
        print(f"  output {o.name}: {o.type}")
    if spec.container is not None:
        print(f"  runs   {' '.join([*spec.container.command, *spec.container.args])[:200]}")


def _export(args: argparse.Namespace) -> int:
    spec = (load_component(args.ref).spec if ":" in args.ref
            else _newest(_catalog(args), args.ref).spec)
    targets.get("kfp").export_component(spec, args.output, args.config)
    print(f"{args.output}: {spec.name}@{spec.version} as a Kubeflow component")
    return 0


def add_parsers(sub: Any) -> None:
    comps = sub.add_parser("components", help="the shared component catalog")
    comps.add_argument("--catalog", help="folder, s3://bucket/prefix or a store URL (default: "
                       "$KUBESAGE_CATALOG, else the run store of config/local.yaml)")
    comps_sub = comps.add_subparsers(dest="components_command", required=True)
    c_list = comps_sub.add_parser("list", help="the newest version of every component")
    c_list.add_argument("--json", action="store_true")
    c_show = comps_sub.add_parser("show", help="one component's interface")
    c_show.add_argument("ref", metavar="NAME[@VERSION]")
    c_show.add_argument("--json", action="store_true")
    c_pub = comps_sub.add_parser("publish", help="publish a component version")
    c_pub.add_argument("component", metavar="FILE.py:COMPONENT|FILE.yaml",
                       help="a kubesage component, or a Kubeflow component YAML to import")
    c_pub.add_argument("--version", help="the version of an imported Kubeflow component YAML")
    c_pub.add_argument("--image", help="pinned image (ID or digest); default: the local image's ID")
    c_pub.add_argument("--publisher", default="")
    c_exp = comps_sub.add_parser("export", help="write a component as Kubeflow component YAML")
    c_exp.add_argument("ref", metavar="NAME[@VERSION]|FILE.py:COMPONENT")
    c_exp.add_argument("-o", "--output", required=True)
    c_exp.add_argument("--config", help="Kubeflow target config (default: config/kfp.yaml)")
    comps.set_defaults(func=cmd_components)
