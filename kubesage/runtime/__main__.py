"""``python -m kubesage.runtime CONTRACT ARGS...``: one module per contract, each with main().

A contract is a module of this package (``local``, ``kfp``, ``sagemaker_processing``,
``sagemaker_training``) or, for a target that brings its own, a dotted module path
(``my_target.contract``); each target names the contracts its steps use (``Target.contracts``).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys

import kubesage.runtime as package

ALIASES = {"train": "sagemaker_training"}  # SageMaker starts training images as `IMAGE train`
_NOT_CONTRACTS = ("context", "distributed", "invoke", "members")  # helpers the contracts share


def contracts() -> list[str]:
    """The contracts of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_CONTRACTS)


def module_of(name: str) -> str | None:
    """The module implementing contract ``name``, or None if there is none."""
    name = ALIASES.get(name, name)
    if "." in name:
        return name if importlib.util.find_spec(name) is not None else None
    return f"kubesage.runtime.{name}" if name in contracts() else None


def main(argv: list[str]) -> int:
    module = module_of(argv[0]) if argv else None
    if module is None:
        print(f"usage: python -m kubesage.runtime {{{','.join(contracts())}|module.path}} ARGS...",
              file=sys.stderr)
        return 2
    importlib.import_module(module).main(*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
