"""The command line: the only place that prints to the user or chooses an exit code.

Each command lives in its own module under ``neuronperf.cli`` and exposes ``register(subparsers)``,
which adds its parser and sets ``handler(args) -> int``. Library code raises typed errors;
``main`` turns them into one-line messages and the exit codes of design.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Optional, TextIO

from neuronperf.errors import NeuronPerfError, SpecError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: A file could not be written (disk full, quota, read-only folder): what finished is kept.
EXIT_OUTPUT = 3

# Command modules, in the order `neuronperf --help` lists them.
_COMMAND_MODULES = ("spec_commands", "run_commands", "answer_commands", "index_commands")


class _Parser(argparse.ArgumentParser):
    """argparse exits with code 2 on bad usage, which is ours too; keep its one-line message."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from neuronperf.version import __version__

    parser = _Parser(
        prog="neuronperf",
        description="Declarative benchmark sweeps for ML inference (NeuronPerf successor).",
    )
    parser.add_argument("--version", action="version", version=f"neuronperf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"neuronperf.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return the exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed by argparse
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.handler(args))
    except SpecError as e:  # already one located line per problem: FILE:LINE:COL: key.path: ...
        print(str(e), file=sys.stderr)
        return e.exit_code
    except NeuronPerfError as e:
        print(f"neuronperf: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a full disk, a read-only folder: say which file, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"neuronperf: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_OUTPUT
    except KeyboardInterrupt:
        print("neuronperf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `neuronperf plan x.yaml | head`
        return EXIT_OK


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Optional[TextIO] = None, line: Optional[str] = None) -> None:
    """A warning is one line for the user (a broken plug-in, a missing artifact), not the
    source location and line of code that Python shows by default."""
    print(f"neuronperf: warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def console_main() -> None:
    sys.exit(main())
