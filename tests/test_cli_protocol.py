"""``cellbench protocol check`` / ``cellbench station check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.cli.main import main


def test_check_lists_the_steps(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    protocol = fixtures_dir / "protocols" / "formation_cycling.toml"
    assert main(["protocol", "check", str(protocol)]) == 0
    out = capsys.readouterr().out
    assert "'Formation and cycling, coin cell'" in out
    assert "11 steps" in out and "2.5 V ≤ V ≤ 4.35 V" in out
    # step index, line, indented loop body
    assert "    6    32  cycling: loop until discharge capacity < 80% of first (at most 500)" in out
    assert "    7    38    cccv ? A to 4.2 V" in out
    assert (
        "needs a station to resolve" in out and "'C/10' needs the cell's nominal_capacity_ah" in out
    )
    assert out.rstrip().endswith(f"OK: {protocol}")


def test_check_against_a_station_resolves_c_rates(
    fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protocol = fixtures_dir / "protocols" / "formation_cycling.toml"
    station = fixtures_dir / "stations" / "coin_cell_station.toml"
    assert main(["protocol", "check", str(protocol), "--station", str(station)]) == 0
    out = capsys.readouterr().out
    assert "cc 200 µA until V > 4.2 V or t > 12 h" in out
    assert "needs a station" not in out
    assert "smu1" in out and "keithley2450" in out and "all channels" in out


def test_errors_are_file_line_key_message(
    fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protocol = fixtures_dir / "protocols" / "bad" / "typos.toml"
    assert main(["protocol", "check", str(protocol)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert (
        lines[0] == f"{protocol}:3: sample_intervall: unknown key; did you mean 'sample_interval'?"
    )
    assert f"{protocol}:21: step[2].until.voltage_above: expected a voltage" in captured.err
    assert lines[-1] == "cellbench: 8 problem(s); nothing was run"


def test_station_mismatch_is_reported(
    fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protocol = fixtures_dir / "protocols" / "ccd_symmetric.toml"
    station = fixtures_dir / "stations" / "pellet_station.toml"
    assert main(["protocol", "check", str(protocol), "--station", str(station)]) == 1
    err = capsys.readouterr().err
    assert f"{protocol}:27: step 2 (ccd): needs a source instrument" in err


def test_station_and_protocol_problems_together(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = tmp_path / "station.toml"
    station.write_text('[cell]\narea_cm2 = "1 cm2"\n[[instrument]]\nname = "a"\n')
    protocol = fixtures_dir / "protocols" / "bad" / "syntax.toml"
    assert main(["protocol", "check", str(protocol), "--station", str(station)]) == 1
    err = capsys.readouterr().err
    assert f"{station}:2: cell.area_cm2: must be a number" in err
    assert f"{protocol}:6: TOML syntax" in err


def test_station_check(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = fixtures_dir / "stations" / "ssb_station.toml"
    assert main(["station", "check", str(station)]) == 0
    out = capsys.readouterr().out
    assert "force1" in out and "mark10" in out and "pressure" in out
    assert main(["station", "check", str(fixtures_dir / "nope.toml")]) == 1
    assert "no such station file" in capsys.readouterr().err


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["protocol", "check", "--help"])
    assert info.value.code == 0
    assert "file:line: key: message" in capsys.readouterr().out
    assert main(["protocol"]) == 2
