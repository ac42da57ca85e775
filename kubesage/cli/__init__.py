"""The ``kubesage`` command line: parse, call, print. One module per command group: ``run``
(run, rerun), ``runs`` (runs, compare, experiments), ``components``, ``build`` (build, compile,
validate), ``submit`` (submit, deploy, serve), ``project`` (init, sample-data), ``console`` (ui,
logs); ``common`` holds
what they share. Commands reach targets only through the registry (``kubesage.targets``).

Exit codes: 0 done (a run succeeded); 1 a run failed; 2 an error in what was given (pipeline,
config, parameter, file), named on stderr; 3 a target refuses an option or feature it cannot
honour; 128+N stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import os
import sys

from kubesage.cli import build, components, console, project, run, runs, submit
from kubesage.cli.common import EXIT_ERROR, EXIT_REFUSED
from kubesage.dsl.errors import KubesageError
from kubesage.targets import base as targets

GROUPS = (run, runs, components, build, submit, project, console)


def parser() -> argparse.ArgumentParser:
    """Every command, each group's parsers added by its own module."""
    from kubesage import __version__

    p = argparse.ArgumentParser(
        prog="kubesage",
        description="Run ML pipelines locally in Docker; compile them for Kubeflow Pipelines or "
                    "SageMaker Pipelines; share their components; trace and re-run their runs.")
    p.add_argument("--version", action="version", version=f"kubesage {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def _one_line(error: Exception) -> str:
    """An error on one line: a message listing several problems joins them with '; '."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    from kubesage.runs.signals import Interrupted, stop_on_signals

    args = parser().parse_args(argv)
    try:
        with stop_on_signals():
            return int(args.func(args))
    except targets.Unsupported as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_REFUSED
    except KubesageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as e:
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubesage runs list | head`: the reader left, nothing to say
        sys.stderr.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
