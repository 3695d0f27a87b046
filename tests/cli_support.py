"""Helpers for tests that run ``cellbench`` as a user does: a subprocess, and a wait for its run
folder to hold rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cellbench.daq.store import open_run


def cellbench(*args: str, **kwargs: Any) -> subprocess.Popen:
    """``python -m cellbench.cli ARGS`` unbuffered, stdout and stderr piped as text; ``kwargs``
    go to :class:`subprocess.Popen`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cellbench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def wait_for_rows(run: Path, rows: int, timeout_s: float = 30.0) -> None:
    """Return once run folder ``run`` holds at least ``rows`` samples; AssertionError after
    ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (run / "run.json").is_file():
            try:
                if open_run(run).tables()["samples"] >= rows:
                    return
            except Exception:  # the folder is being created
                pass
        time.sleep(0.05)
    raise AssertionError(f"{run}: fewer than {rows} samples after {timeout_s} s")
