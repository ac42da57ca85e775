"""``python -m kubesage.runtime CONTRACT ARGS...``"""

from __future__ import annotations

import sys

CONTRACTS = ("local",)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in CONTRACTS:
        print(f"usage: python -m kubesage.runtime {{{','.join(CONTRACTS)}}} ARGS...", file=sys.stderr)
        return 2
    contract, args = argv[0], argv[1:]
    if contract == "local":
        from kubesage.runtime import local

        local.main(*args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
