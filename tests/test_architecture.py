"""The dependency rules of ARCHITECTURE.md, checked on every import in kubesage/ (those inside
functions and under ``TYPE_CHECKING`` too), so the layout stays what the map says."""

from __future__ import annotations

import ast
import os
import sys

import pytest

from tests.conftest import REPO

PACKAGE = os.path.join(REPO, "kubesage")
NEUTRAL = ("kubesage.dsl", "kubesage.plan", "kubesage.runs", "kubesage.config", "kubesage.util",
           "kubesage.project", "kubesage.store")
# What the neutral core may import besides the standard library and itself: YAML configs, the
# store's SQL toolkit and migrations, and the sample data's readers.
CORE_LIBRARIES = ("yaml", "sqlalchemy", "alembic", "numpy", "PIL", "sklearn")
# Each backend SDK, and who may import it.
SDKS = {
    "kfp": ("kubesage.targets.kfp",),
    "kfp_server_api": ("kubesage.targets.kfp",),
    "sagemaker": ("kubesage.targets.sagemaker",),
    "boto3": ("kubesage.targets.sagemaker", "kubesage.catalog", "kubesage.store.artifacts"),
    "botocore": ("kubesage.targets.sagemaker", "kubesage.catalog", "kubesage.store.artifacts"),
    "docker": ("kubesage.docker_engine", "kubesage.targets", "kubesage.serving"),
    "mlflow": ("kubesage.tracking",),
    "matplotlib": ("kubesage.tracking",),
    "fastapi": ("kubesage.serving", "kubesage.console"),
    "uvicorn": ("kubesage.serving", "kubesage.console"),
    "starlette": ("kubesage.serving", "kubesage.console"),
    "jinja2": ("kubesage.console",),
    "markdown_it": ("kubesage.console",),
    "kubernetes": ("kubesage.targets.kfp",),
}


def module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return rel.removesuffix(".__init__")


def imports() -> dict[str, set[str]]:
    """Every kubesage module -> every module it imports, wherever the import statement is."""
    found: dict[str, set[str]] = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            names: set[str] = set()
            for node in ast.walk(ast.parse(open(path).read(), path)):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
            found[module_name(path)] = names
    return found


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def top(module: str) -> str:
    return module.split(".", 1)[0]


def violations(rule: str) -> list[str]:
    out = []
    graph = imports()
    for module, names in sorted(graph.items()):
        for name in sorted(names):
            problem = RULES[rule](module, name, graph)
            if problem:
                out.append(f"{module} imports {name}: {problem}")
    return out


def _neutral_core(module: str, name: str, graph: dict[str, set[str]]) -> str:
    if not within(module, NEUTRAL):
        return ""
    if top(name) in sys.stdlib_module_names or top(name) in CORE_LIBRARIES:
        return ""
    if within(name, NEUTRAL) or name == "kubesage" or name.startswith("kubesage.__"):
        return ""
    if within(module, SDKS.get(top(name), ())):  # S3 for artifacts, in store/artifacts.py only
        return ""
    return "the neutral core imports no backend SDK, no docker, no target"


def _sdk_confined(module: str, name: str, graph: dict[str, set[str]]) -> str:
    owners = SDKS.get(top(name))
    if owners is None or within(module, owners):
        return ""
    return f"only {', '.join(owners)} may import {top(name)}"


def _targets_apart(module: str, name: str, graph: dict[str, set[str]]) -> str:
    if not (within(module, ("kubesage.targets",)) and within(name, ("kubesage.targets",))):
        return ""
    mine, theirs = module.split(".")[:3], name.split(".")[:3]
    if len(theirs) < 3 or theirs[2] in ("base",) or mine == theirs:
        return ""
    if len(mine) < 3:  # kubesage.targets itself re-exports base
        return "" if theirs[2] == "base" else "the targets package knows targets by registry only"
    return "a target imports no other target (shared code goes below the targets)"


def _thin_cli(module: str, name: str, graph: dict[str, set[str]]) -> str:
    if not within(module, ("kubesage.cli", "kubesage.console")) or not within(
            name, ("kubesage.targets",)):
        return ""
    parts = name.split(".")
    if len(parts) == 2 or parts[2] == "base" or (len(parts) == 3 and parts[2] in _public_names()):
        return ""
    return "the command line and the console reach targets through the registry, never their internals"


def _public_names() -> set[str]:
    from kubesage import targets

    return set(targets.__all__)


def _runtime_alone(module: str, name: str, graph: dict[str, set[str]]) -> str:
    if not within(module, ("kubesage.runtime",)) or top(name) != "kubesage":
        return ""
    if within(name, ("kubesage.runtime", "kubesage.dsl", "kubesage.util")) or name == "kubesage" \
            or name.startswith("kubesage.__"):
        return ""
    return "the in-container runtime imports only the DSL and its own modules"


def _no_sql_in_console(module: str, name: str, graph: dict[str, set[str]]) -> str:
    if within(module, ("kubesage.console",)) and (top(name) == "sqlalchemy" or within(
            name, ("kubesage.store.schema", "kubesage.store.sql"))):
        return "the console reads runs through RunStore (kubesage.store), never SQL of its own"
    return ""


RULES = {"neutral core": _neutral_core, "SDKs confined": _sdk_confined,
         "targets apart": _targets_apart, "thin CLI": _thin_cli, "runtime alone": _runtime_alone,
         "console reads through the store": _no_sql_in_console}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_dependency_rule(rule: str) -> None:
    assert violations(rule) == []


def test_the_rules_see_a_violation(tmp_path) -> None:
    """Each rule can fail: a line that breaks it is reported."""
    graph = {"kubesage.runs.x": {"docker"}, "kubesage.cli.x": {"kubesage.targets.kfp.submit"},
             "kubesage.targets.kfp.x": {"kubesage.targets.sagemaker.compiler"},
             "kubesage.runtime.x": {"kubesage.targets.base"}, "kubesage.dsl.x": {"boto3"},
             "kubesage.console.x": {"sqlalchemy"}}
    expected = {"neutral core": ("kubesage.runs.x", "docker"),
                "SDKs confined": ("kubesage.dsl.x", "boto3"),
                "targets apart": ("kubesage.targets.kfp.x", "kubesage.targets.sagemaker.compiler"),
                "thin CLI": ("kubesage.cli.x", "kubesage.targets.kfp.submit"),
                "runtime alone": ("kubesage.runtime.x", "kubesage.targets.base"),
                "console reads through the store": ("kubesage.console.x", "sqlalchemy")}
    for rule, (module, name) in expected.items():
        assert RULES[rule](module, name, graph), f"{rule} misses {module} -> {name}"


def test_the_architecture_map_names_every_package() -> None:
    """ARCHITECTURE.md names each package of kubesage/ (a new one is put on the map)."""
    text = open(os.path.join(REPO, "ARCHITECTURE.md")).read()
    packages = sorted(d for d in os.listdir(PACKAGE)
                      if os.path.isfile(os.path.join(PACKAGE, d, "__init__.py")))
    assert [p for p in packages if f"{p}/" not in text] == []
    assert len(text.splitlines()) <= 120, "one page"


def test_no_function_over_80_lines_and_no_cli_module_over_250() -> None:
    """The floors of a readable code base: small functions, a thin command line."""
    long = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            text = open(path).read()
            for node in ast.walk(ast.parse(text, path)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    size = (node.end_lineno or node.lineno) - node.lineno + 1
                    if size > 80:
                        long.append(f"{module_name(path)}.{node.name}: {size} lines")
            if folder.endswith(os.path.join("kubesage", "cli")) and len(text.splitlines()) > 250:
                long.append(f"{module_name(path)}: {len(text.splitlines())} lines")
    assert long == []
