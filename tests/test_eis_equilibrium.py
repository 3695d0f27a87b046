"""The conductivity workflow's equilibrium wait: an ``eis`` step repeated until consecutive
sweeps agree (and the temperature stopped moving), each comparison recorded; the drift measure
itself on spectra with a known change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.eis_drift import DriftError, equilibrium_table, spectrum_drift
from cellbench.daq.protocol import ProtocolError, parse_protocol
from cellbench.daq.session import prepare
from cellbench.daq.store import open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EIS = """
[[step]]
type = "eis"
start = "1 MHz"
stop = "100 Hz"
points_per_decade = 4
amplitude = "20 mV"
"""


def test_drift_is_the_rms_relative_change():
    f = np.logspace(6, 1, 21)
    z = 100.0 - 1j * 50.0 / (1 + f / 1e4)
    assert spectrum_drift(f, z, f, z * 1.02) == pytest.approx(0.02)
    # other frequencies: interpolated onto the first sweep's inside the common range
    f2 = np.logspace(6.05, 0.95, 33)
    z2 = 1.01 * (100.0 - 1j * 50.0 / (1 + f2 / 1e4))
    assert spectrum_drift(f, z, f2, z2) == pytest.approx(0.01, rel=0.05)
    with pytest.raises(DriftError, match="no frequency range"):
        spectrum_drift(f, z, f * 1e6, z)


def test_protocol_keys_are_checked_with_their_lines():
    p = parse_protocol(
        'name = "x"\n'
        + EIS
        + 'drift_max = "1 %"\nmax_sweeps = 4\ntemperature_drift_max = "0.2 K"\n'
    )
    step = p.steps[0]
    assert step.drift_max_fraction == pytest.approx(0.01) and step.max_sweeps == 4
    assert step.temperature_drift_max_kelvin == pytest.approx(0.2)
    assert "repeated until drift < 1 %" in step.summary()
    assert parse_protocol('name = "x"\n' + EIS).steps[0].drift_max_fraction is None
    with pytest.raises(ProtocolError) as err:
        parse_protocol('name = "x"\n' + EIS + "max_sweeps = 1\n" + 'drift_max = "150 %"\n')
    text = str(err.value)
    assert ":9: step[0].max_sweeps: must be at least 2" in text
    assert ":10: step[0].drift_max" in text and "between 0 and 1" in text
    with pytest.raises(ProtocolError, match="repeats need drift_max"):
        parse_protocol('name = "x"\n' + EIS + "max_sweeps = 3\n")


def _run(tmp_path: Path, extra: str, *, tolerance: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    station = (FX / "stations" / "pellet_station.toml").read_text(encoding="utf-8")
    station = station.replace('cell = "../sim/', f'cell = "{FX / "sim"}/')
    (tmp_path / "station.toml").write_text(station, encoding="utf-8")
    protocol = f"""
name = "equilibrium"
sample_interval = "30 s"
[safety]
temperature_max = "100 degC"
[[step]]
type = "temperature"
setpoint = "60 degC"
tolerance = "{tolerance}"
timeout = "3 h"
{EIS}
{extra}
"""
    (tmp_path / "p.toml").write_text(protocol, encoding="utf-8")
    session = prepare(tmp_path / "p.toml", tmp_path / "station.toml", tmp_path, time_scale=20_000)
    try:
        assert session.engine.run() == "completed"
        run = open_run(session.engine.run_path)
        return run.read("spectra"), run.read("events")
    finally:
        session.close()


def _notes(events: pl.DataFrame) -> list[dict]:
    rows = events.filter(pl.col("kind") == "note")["data"].to_list()
    return [json.loads(d) for d in rows if d and "equilibrium" in d]


def test_engine_repeats_until_the_pellet_has_settled(tmp_path):
    # the step ends 10 K short of the set point: the pellet is still warming (tau 600 s), so
    # its impedance falls from sweep to sweep until it has caught up with the chamber
    spectra, events = _run(
        tmp_path,
        'drift_max = "1 %"\nmax_sweeps = 12\nsweep_wait = "10 min"\n'
        'temperature_drift_max = "0.2 K"',
        tolerance="10 K",
    )
    notes = _notes(events)
    assert len(notes) >= 2 and notes[-1]["equilibrium"] is True
    assert all(not n["equilibrium"] for n in notes[:-1])
    assert notes[0]["drift_fraction"] > notes[-1]["drift_fraction"]
    assert notes[-1]["drift_fraction"] <= 0.01
    assert notes[-1]["temperature_change_kelvin"] <= 0.2
    assert notes[-1]["temperature_celsius"] == pytest.approx(60.0, abs=0.3)
    assert spectra["sweep_index"].n_unique() == notes[-1]["sweeps"]
    # the recorded spectra tell the same story afterwards
    table = equilibrium_table(spectra)
    assert table["drift_fraction"][-1] == pytest.approx(notes[-1]["drift_fraction"], rel=1e-6)
    end = events.filter(pl.col("kind") == "step_end")["message"].to_list()
    assert any("equilibrium after" in m for m in end)


def test_engine_warns_when_no_equilibrium_is_reached(tmp_path):
    spectra, events = _run(
        tmp_path, 'drift_max = "0.01 %"\nmax_sweeps = 2\nsweep_wait = "1 min"', tolerance="15 K"
    )
    assert spectra["sweep_index"].n_unique() == 2
    warned = events.filter((pl.col("kind") == "note") & (pl.col("severity") == "warning"))
    assert warned.height == 1 and "no equilibrium after 2 sweeps" in warned["message"][0]


def test_eis_report_takes_the_last_sweep_of_an_equilibrium_wait():
    """The EIS report's Arrhenius points: one per temperature, the first time it is reached,
    and for a step that repeated its sweep until equilibrium, that step's last sweep."""
    pytest.importorskip("matplotlib")
    from cellbench.analysis.report import Report
    from cellbench.analysis.report.reports_eis import _conductivity_from_sweeps

    table = pl.DataFrame(
        {
            # 25 degC twice (warming pellet), 40 twice, 60 three times, 25 again at the end
            "temperature_celsius": [23.0, 24.9, 38.8, 39.9, 57.0, 59.5, 59.9, 25.0],
            "R0": [130.0, 100.0, 70.0, 60.0, 40.0, 31.0, 30.0, 101.0],
            "step_index": [1, 1, 3, 3, 5, 5, 5, 7],
            "cycle_count": [1] * 8,
        }
    )
    rep = Report("t")
    _conductivity_from_sweeps(rep, table, "R0", 0.1, 1.0, "")
    points = _points(rep)
    assert points["temperature_celsius"].to_list() == [24.9, 39.9, 59.9]
    assert points["conductivity_siemens_per_centimeter"].to_list() == pytest.approx(
        [0.1 / 100.0, 0.1 / 60.0, 0.1 / 30.0]
    )
    # EIS in a loop (same step, new cycle each time) still takes the first cycle's sweep
    loop = table.with_columns(
        pl.Series("cycle_count", [1, 2, 1, 2, 1, 2, 3, 1]),
        pl.Series("temperature_celsius", [25.0, 25.0, 40.0, 40.0, 60.0, 60.0, 60.0, 25.0]),
    )
    rep = Report("t")
    _conductivity_from_sweeps(rep, loop, "R0", 0.1, 1.0, "")
    assert _points(rep)["conductivity_siemens_per_centimeter"].to_list() == pytest.approx(
        [0.1 / 130.0, 0.1 / 70.0, 0.1 / 40.0]
    )


def _points(rep) -> pl.DataFrame:
    items = [i for s in rep.sections for i in s.items]
    return next(i for i in items if getattr(i, "name", "") == "conductivity").frame


def test_gui_arrhenius_uses_the_same_points():
    from cellbench.analysis.eis_drift import arrhenius_sweeps
    from cellbench.gui.analysis_data import arrhenius

    table = pl.DataFrame(
        {
            "temperature_celsius": [23.0, 24.9, 39.9, 59.0, 59.9, 25.0],
            "R0": [130.0, 100.0, 60.0, 31.0, 30.0, 101.0],
            "step_index": [1, 1, 3, 5, 5, 7],
            "cycle_count": [1] * 6,
        }
    )
    assert arrhenius_sweeps(table).tolist() == [False, True, True, False, True, False]
    t, sigma, _ = arrhenius(table, 0.1, 1.0)
    assert t.tolist() == [24.9, 39.9, 59.9]
    assert sigma.tolist() == pytest.approx([1e-3, 0.1 / 60.0, 0.1 / 30.0])
