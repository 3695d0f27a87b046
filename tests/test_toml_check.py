"""The shared TOML checker (daq/toml_check.py) that protocols, stations and engine options use."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.core.units import parse_voltage
from cellbench.daq.protocol import ProtocolError, load_protocol
from cellbench.daq.station import StationError, load_station
from cellbench.daq.toml_check import (
    Checker,
    TomlFileError,
    did_you_mean,
    parse_toml,
    positive_int,
    read_toml_file,
)

TEXT = """\
[limits]
voltage_max = "4.2 V"
voltage_mn = "2.5 V"
count = 0

[other]
x = 1
"""


def test_did_you_mean_or_the_known_keys() -> None:
    assert did_you_mean("voltage_mn", ["voltage_min", "voltage_max"]) == (
        "did you mean 'voltage_min'?"
    )
    assert did_you_mean("zzz", ["a", "b"]) == "known: a, b"


def test_every_problem_in_one_error_sorted_by_line() -> None:
    checker = Checker("f.toml", TEXT)
    data = parse_toml(TEXT, "f.toml")
    limits = checker.table(data["limits"], ("limits",))
    assert limits.get("voltage_max", parse_voltage) == pytest.approx(4.2)
    assert limits.get("count", positive_int) is None  # reported, not raised
    assert limits.need("voltage_min", parse_voltage, 'e.g. "2.5 V"') is None
    limits.finish()  # voltage_mn was asked for by nobody: a typo
    checker.unknown_keys(data, (), ["limits"])
    assert limits.failed
    with pytest.raises(TomlFileError) as info:
        checker.raise_if_any(TomlFileError)
    assert [str(p) for p in info.value.problems] == [
        "f.toml:1: limits: missing 'voltage_min' (e.g. \"2.5 V\")",
        "f.toml:3: limits.voltage_mn: unknown key; did you mean 'voltage_min'?",
        "f.toml:4: limits.count: must be at least 1, got 0",
        "f.toml:6: other: unknown key; known: limits",
    ]
    assert str(info.value).startswith("4 problem(s) in f.toml:\n")


def test_syntax_errors_and_unreadable_files_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_toml("a = 1\nb = { c = 1,\n d = 2 }\n", "p.toml", error=ProtocolError)
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("p.toml", 2)
    assert "inline table { ... } must be on one line" in problem.message
    with pytest.raises(StationError, match=r"s\.toml: no such station file"):
        read_toml_file(tmp_path / "s.toml", what="station", error=StationError)
    with pytest.raises(StationError, match="is a folder, not a station file"):
        load_station(tmp_path)
    with pytest.raises(ProtocolError, match="no such protocol file"):
        load_protocol(tmp_path / "missing.toml")
    assert issubclass(ProtocolError, TomlFileError) and issubclass(StationError, TomlFileError)
