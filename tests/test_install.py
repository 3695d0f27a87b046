"""What a wheel install needs: the example files as package data, one-line hints for missing extras.

The full check (fresh venv, ``pip install '.[hw]'``, ``cellbench demo`` from an empty folder, the
README's example pairs) is ``.ci/wheel_check``, run by CI; these are its fast parts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from cellbench.daq.protocol import load_protocol
from cellbench.daq.session import SessionError, SessionOptions, _session_options, build
from cellbench.daq.station import parse_station, validate_run
from cellbench.fixtures import FixturesNotFound, fixtures_dir, protocol_path, station_path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_every_example_file(tmp_path: Path) -> None:
    """Build the wheel from a copy of the package folders; it holds every fixtures/ TOML file."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in config["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("cellbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "cellbench/fixtures/" + p.relative_to(ROOT / "fixtures").as_posix()
        for p in (ROOT / "fixtures").rglob("*.toml")
    }
    assert len(expected) >= 15
    assert expected <= names, sorted(expected - names)
    assert "cellbench/fixtures/__init__.py" in names


def test_example_files_resolve_from_the_package() -> None:
    assert fixtures_dir() == ROOT / "fixtures"  # the editable install maps the folder in place
    assert protocol_path("demo") == ROOT / "fixtures" / "protocols" / "demo.toml"
    assert station_path("demo_station").is_file()
    with pytest.raises(FixturesNotFound, match=r"no example protocol 'nope'.*demo"):
        protocol_path("nope")


BLOCK_HW = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {'serial', 'pyvisa', 'pyvisa_py'}:
            raise ModuleNotFoundError('blocked ' + name, name=name)
sys.meta_path.insert(0, Block())
from cellbench.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_demo_without_the_hw_extra_names_it_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_HW, "demo", "--plain", "--out", str(tmp_path / "runs")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "cellbench[hw]" in lines[0] and "pyserial" in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()  # nothing started, nothing recorded


def test_session_options_as_one_value_or_as_keywords(tmp_path: Path) -> None:
    setup = SessionOptions(time_scale=10.0, engine={"retries": 3})
    assert _session_options(setup, {}) == setup
    merged = _session_options(setup, {"options": {"retries": 1}, "run_dir_name": "r"})
    assert merged == SessionOptions(time_scale=10.0, engine={"retries": 1}, run_dir_name="r")
    with pytest.raises(TypeError, match="time_scal"):
        _session_options(None, {"time_scal": 2.0})
    # One value or keywords, the session is checked the same way: a time scale is refused for
    # real instruments before any port is opened.
    station = parse_station(REAL_STATION, source="real.toml")
    protocol = validate_run(load_protocol(protocol_path("formation_cycling")), station)
    for args, keywords in (((SessionOptions(time_scale=5.0),), {}), ((), {"time_scale": 5.0})):
        with pytest.raises(SessionError, match="real instruments run in real time"):
            build(protocol, station, tmp_path, *args, **keywords)
    assert not any(tmp_path.iterdir())


REAL_STATION = """
[cell]
name = "coin cell"
nominal_capacity_ah = 0.002
area_cm2 = 0.785

[[instrument]]
name = "smu1"
driver = "keithley2450"
address = "TCPIP::127.0.0.1::1::SOCKET"

[[instrument]]
name = "chamber"
driver = "espec"
address = "/dev/null"
"""
