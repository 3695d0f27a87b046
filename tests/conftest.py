"""Shared fixtures: paths to the project's own fixtures and to the real files in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SHARED_DATA = Path(os.environ.get("CELLBENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _gui_settings_in_tmp(tmp_path_factory, monkeypatch):
    """The window remembers its last choices (QSettings): never in the user's own settings,
    and never carried from one test to the next."""
    folder = tmp_path_factory.mktemp("gui-settings")
    monkeypatch.setenv("CELLBENCH_GUI_SETTINGS", str(folder / "settings.ini"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real instrument files; tests that use them skip with the reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real instrument files not found at {SHARED_DATA} "
            "(the shared/data folder beside the checkout; set CELLBENCH_SHARED_DATA to point at it)"
        )
    return SHARED_DATA


# The lab catalog's tests share one throw-away PostgreSQL server per session (tests/pg_server.py).
from pg_server import catalog_url, pg_server  # noqa: E402, F401

# GUI tests never need a screen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
