"""The ``cellbench`` command line.

Each group of subcommands lives in its own module with a ``register(subparsers)`` function that adds
its parsers and sets ``func`` (called with the parsed namespace, returns an exit code). Modules are
imported here (each imports its heavy or optional dependencies inside its command functions), so a
missing optional dependency (pyserial, Qt) only breaks the commands that need it, with a one-line
message naming the extra to install, and registering every command imports no numpy, polars or
scipy: ``cellbench --help`` starts in a fraction of a second (tests/test_cli_startup.py checks the
imports, bench/cli_startup.py measures the time).

Exit codes: 0 success, 1 failure (bad file, instrument fault, aborted run), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "cellbench.cli.runs",
    "cellbench.cli.analyze",
    "cellbench.cli.report",
    "cellbench.cli.convert",
    "cellbench.cli.sim",
    "cellbench.cli.run",
    "cellbench.cli.protocol",
    "cellbench.cli.instruments",
    "cellbench.cli.gui",
    "cellbench.cli.sync",
    "cellbench.cli.catalog",
    "cellbench.cli.batch",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellbench")
    except PackageNotFoundError:  # running from a checkout without install
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked (importlib.metadata and
    the package's metadata file cost more than registering every command)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs) -> None:
        kwargs.setdefault("help", "show program's version number and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellbench",
        description="Battery test-lab toolkit: instruments, acquisition, analysis.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a skipped vendor column, an aborted sweep) as one line, not a source dump."""
    print(f"cellbench: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cellbench`` console script; returns the process exit code."""
    if not os.environ.get("CELLBENCH_DEBUG"):
        warnings.showwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cellbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): no error message; silence the flush at exit too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as other command-line tools end in a closed pipe
    except Exception as exc:  # one clear line for the user; CELLBENCH_DEBUG=1 shows the traceback
        if os.environ.get("CELLBENCH_DEBUG"):
            raise
        print(f"cellbench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
