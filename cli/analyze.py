"""``cellbench analyze ...``: the analysis commands, one module per family of analyses.

Each module in ``ANALYZE_MODULES`` defines ``register(analyze_subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

ANALYZE_MODULES: tuple[str, ...] = (
    "cellbench.cli.analyze_eis",
    "cellbench.cli.analyze_cycling",
    "cellbench.cli.analyze_titration",
    "cellbench.cli.analyze_pressure",
    "cellbench.cli.analyze_replicates",
    "cellbench.cli.analyze_transport",
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "analyze",
        help="fit and summarise recorded runs and vendor files",
        description="Fits and summaries over recorded runs and vendor files.",
    )
    analyze_sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    for name in ANALYZE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(analyze_sub)
