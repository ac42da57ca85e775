"""The light install (``pip install kubesage``, no extras) stays light.

The declared dependencies come from this checkout's ``pyproject.toml`` (an editable install's
metadata is as old as its last ``pip install``); what each of them requires in turn comes from
the metadata of the distributions installed here (``importlib.metadata``), so the closure is the
one pip installs for these pins.
"""

from __future__ import annotations

import os
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what made `pip install kubesage` 1.1 GB, and what the light install never has
HEAVY = {"pyarrow", "pandas", "scipy", "scikit-learn", "matplotlib", "mlflow", "torch"}


def _project() -> dict[str, object]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def closure(requirements: list[str]) -> dict[str, list[str]]:
    """Every distribution that ``requirements`` pull in (markers evaluated for this Python, with
    the extras asked of each), each with the chain of requirements that brings it."""
    chains: dict[str, list[str]] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), ["kubesage"]) for r in requirements]
    while todo:
        req, chain = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in done:
            continue
        done.add((name, frozenset(req.extras)))
        chains.setdefault(name, [*chain, name])
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} ({' -> '.join(chain)}) is not installed here: run scripts/setup.sh")
        for text in dist.requires or []:
            sub = Requirement(text)
            wanted = [""] + sorted(req.extras)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((sub, [*chain, name]))
    return chains


def test_the_light_install_pulls_no_heavy_package() -> None:
    requirements = _project()["dependencies"]
    assert isinstance(requirements, list)
    found = closure(requirements)
    heavy = {name: " -> ".join(found[name]) for name in sorted(HEAVY & set(found))}
    assert not heavy, f"the light install pulls heavy packages back (move them to an extra): {heavy}"


def test_the_check_sees_heavy_packages_through_the_metadata() -> None:
    """The SageMaker SDK is an extra because its packages require pandas, scipy, pyarrow and the
    whole MLflow: the closure above finds them, so it would fail were the SDK a dependency."""
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    found = closure(extras["sagemaker"])
    assert {"pandas", "scipy", "pyarrow", "mlflow", "matplotlib"} <= set(found)
    assert "matplotlib" in closure(extras["plots"])


def test_every_pin_is_exact() -> None:
    project = _project()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict) and isinstance(project["dependencies"], list)
    loose = [r for group in [project["dependencies"], *extras.values()] for r in group
             if [s.operator for s in Requirement(r).specifier] != ["=="]]
    assert not loose, f"pin these exactly (==): {loose}"


def test_without_the_sdk_the_sagemaker_target_says_how_to_install_it(monkeypatch) -> None:
    from kubesage.dsl.errors import KubesageError
    from kubesage.targets.sagemaker.session import check_sdk_version

    real = metadata.version

    def version(name: str) -> str:
        if name == "sagemaker":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(KubesageError, match=r"pip install 'kubesage\[sagemaker\]'$"):
        check_sdk_version()
