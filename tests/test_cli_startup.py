"""The command line starts fast: registering the commands imports no numpy, polars or scipy.

Each command module imports its heavy dependencies inside its command functions (cli/main.py); a
description or list of choices that names something from a heavy module is filled in only when
shown (cli/help_text.py). bench/cli_startup.py measures the time.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from cellbench.cli.main import build_parser, main

HEAVY = ("numpy", "scipy", "polars")

# Run in a fresh interpreter (this test process has numpy loaded already): each argv as
# `python -m cellbench.cli ARGV` would, then list the heavy packages that got imported.
_PROBE = """
import sys
from cellbench.cli.main import main
for argv in ({argvs}):
    try:
        main(list(argv))
    except SystemExit:
        pass
print("heavy:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _heavy_after(*argvs: tuple[str, ...]) -> list[str]:
    code = _PROBE.format(argvs="".join(f"{a!r}, " for a in argvs), heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    last = done.stdout.splitlines()[-1]
    assert last.startswith("heavy:"), done.stdout
    return [m for m in last.removeprefix("heavy:").split(",") if m]


def test_help_and_version_import_no_numpy_polars_scipy() -> None:
    assert _heavy_after(("--help",), ("--version",)) == []


def test_group_help_imports_no_numpy_polars_scipy() -> None:
    """A group's help (analyze, runs, catalog) lists its subcommands without loading them."""
    assert _heavy_after(("analyze", "--help"), ("runs", "--help"), ("catalog", "--help")) == []


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_deferred_descriptions_are_complete(capsys: pytest.CaptureFixture[str]) -> None:
    """What the help shows still comes from the analysis modules, filled in when shown."""
    from cellbench.analysis.eis_batch import CANDIDATES
    from cellbench.analysis.readers import FORMATS

    formats = ", ".join(f.name for f in FORMATS)
    assert f"Formats read: {formats}." in _help(capsys, "convert")
    assert f"chosen from {len(CANDIDATES)} candidates" in _help(capsys, "analyze", "eis")


def test_deferred_choices_list_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    from cellbench.analysis.blocking import TEMPLATES
    from cellbench.core.schema import TABLES

    assert f"one of: {', '.join(('auto', *TEMPLATES))}" in _help(capsys, "analyze", "blocking")
    assert f"one of: {', '.join((*TABLES, 'all'))}" in _help(capsys, "runs", "export")
    parser = build_parser()
    args = parser.parse_args(["analyze", "blocking", "f.csv", "--template", next(iter(TEMPLATES))])
    assert args.template == next(iter(TEMPLATES))
    with pytest.raises(SystemExit):
        parser.parse_args(["runs", "export", "RUN", "--table", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
