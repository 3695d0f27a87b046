"""Stack pressure in the reports (issue 16): pressure against time, pressure per cycle, and
resistance against pressure with its power-law fit, on a run of the simulated press station and
on a synthetic impedance series; and nothing of it on a run without pressure."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.eis_synth import frequencies, noisy_spectrum
from cellbench.cli.main import main
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import open_run

pytest.importorskip("matplotlib")

from cellbench.analysis.report import RunData, report_cycling, report_run

FX = Path(__file__).resolve().parents[1] / "fixtures"
PROTOCOL = FX / "protocols" / "pressure_series.toml"
STATION = FX / "stations" / "press_station.toml"
SIM_CELL = FX / "sim" / "sulfide_full_cell.toml"


@pytest.fixture(scope="module")
def press_run(tmp_path_factory) -> Path:
    """The pressure series (HPPC pulses at 2, 5, 10 and 20 MPa) on the simulated press."""
    out = tmp_path_factory.mktemp("runs")
    argv = ["run", str(PROTOCOL), "--station", str(STATION), "--out", str(out)]
    assert main([*argv, "--name", "press", "--plain", "--time-scale", "4000"]) == 0
    return out / "press"


def _names(paths: list[Path]) -> set[str]:
    return {p.stem for p in paths}


def test_press_run_report_has_pressure_figure_per_cycle_pressure_and_the_fit(
    press_run, tmp_path, capsys
):
    out = tmp_path / "report"
    assert main(["report", str(press_run), "--out", str(out)]) == 0
    capsys.readouterr()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Stack pressure against test time (2–20 MPa)" in html
    assert "Stack pressure: pulse resistance" in html
    assert {"pressure", "pulse_resistance_pressure"} <= {p.stem for p in out.glob("*.png")}
    cycles = pl.read_csv(out / "cycles.csv")
    assert cycles["pressure_min_megapascal"][0] == pytest.approx(2.0, rel=0.05)
    assert cycles["pressure_max_megapascal"][0] == pytest.approx(20.0, rel=0.05)
    fit = json.loads((out / "pulse_resistance_pressure.json").read_text())["fit"]
    truth = tomllib.loads(SIM_CELL.read_text())
    m_true = next(v for k, v in _flat(truth) if k == "pressure_exponent")
    # the ohmic R of a 1 s log holds a little charge transfer: m within 0.05 of the cell's
    assert fit["exponent"] == pytest.approx(m_true, abs=0.05)
    assert fit["n"] == 8  # a discharge and a charge pulse at each of four pressures
    assert fit["asr_1mpa_ohm_cm2"] == pytest.approx(fit["r_1mpa_ohm"] * 0.785)
    points = pl.read_csv(out / "pulse_pressure.csv")
    assert sorted(set(np.round(points["pressure_megapascal"].to_list(), 1))) == [
        2.0,
        5.0,
        10.0,
        20.0,
    ]


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v)
        else:
            yield k, v


def test_one_pressure_at_the_pulses_gives_the_figure_but_no_fit(press_run, tmp_path):
    samples = open_run(press_run).read("samples")
    first_hppc = samples.filter(pl.col("step_index") <= 4)  # pulses at 2 MPa only
    files = report_cycling(first_hppc, tmp_path / "one")
    names = _names(files.figures) | _names(files.fits)
    assert "pressure" in names
    assert not {n for n in names if "resistance_pressure" in n}


def test_a_run_without_pressure_shows_none_of_it(press_run, tmp_path):
    samples = open_run(press_run).read("samples").drop("pressure_megapascal")
    files = report_cycling(samples, tmp_path / "none")
    names = _names(files.figures) | _names(files.fits) | _names(files.tables)
    assert not {n for n in names if "pressure" in n}, names
    html = files.html.read_text(encoding="utf-8")
    assert "Stack pressure" not in html and "pressure_m" not in html
    assert "pressure" not in " ".join(pl.read_csv(tmp_path / "none" / "cycles.csv").columns)


# ------------------------------------------------------------- impedance at several pressures

F = frequencies(1e6, 0.1, 8)
CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)"
AREA = 0.5  # cm2
PRESSURES = (2.0, 5.0, 10.0, 20.0, 40.0)
M_TRUE, ASR1_TRUE = 0.5, 400.0  # interface arc: ASR = 400 ohm cm2 at 1 MPa, p^-0.5


def _eis_series(seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Samples holding each pressure for 100 s and one sweep at each: R1 (bulk + grain boundary
    lumped, pressure-free) fixed, R2 (the interface) following ASR1 p^-m."""
    rng = np.random.default_rng(seed)
    samples, spectra = [], []
    for k, p in enumerate(PRESSURES):
        t0 = 100.0 * k
        t = t0 + np.arange(0.0, 100.0, 5.0)
        samples.append(
            pl.DataFrame(
                {
                    "channel": "A",
                    "test_time_second": t,
                    "voltage_volt": np.full(t.size, 3.7),
                    "current_ampere": np.zeros(t.size),
                    "cycle_count": np.full(t.size, 1, dtype=np.int32),
                    "step_index": np.full(t.size, k, dtype=np.int32),
                    "pressure_megapascal": p + 0.01 * rng.standard_normal(t.size),
                }
            )
        )
        r2 = ASR1_TRUE * p**-M_TRUE / AREA
        truth = {
            "R0": 5.0,
            "R1": 80.0,
            "CPE1.Q": 1e-9,
            "CPE1.n": 0.95,
            "R2": r2,
            "CPE2.Q": 1e-5,
            "CPE2.n": 0.85,
        }
        z = noisy_spectrum(CIRCUIT, truth, F, noise=0.002, rng=rng)
        spectra.append(
            pl.DataFrame(
                {
                    "channel": "A",
                    "sweep_index": np.full(F.size, k, dtype=np.int32),
                    "test_time_second": t0 + 50.0 + np.arange(F.size, dtype=float),
                    "frequency_hertz": F,
                    "z_real_ohm": z.real,
                    "z_imag_ohm": z.imag,
                    "cycle_count": np.full(F.size, 1, dtype=np.int32),
                }
            )
        )
    return pl.concat(samples), pl.concat(spectra)


def _meta(area: float | None) -> RunMeta:
    return RunMeta(
        run_id="press-eis",
        start_time="2026-01-01T00:00:00Z",
        cell=Cell(name="pellet", area_cm2=area),
    )


def test_sweeps_at_several_pressures_give_the_interface_power_law(tmp_path):
    samples, spectra = _eis_series()
    data = RunData(samples=samples, spectra=spectra, meta=_meta(AREA))
    files = report_run(data, tmp_path / "eis", circuit=CIRCUIT)
    assert "eis_asr_pressure" in _names(files.figures)
    fits = json.loads((tmp_path / "eis" / "eis_asr_pressure.json").read_text())["arcs"]
    assert set(fits) == {"R1", "R2"}
    interface = fits["R2"]["fit"]
    assert interface["exponent"] == pytest.approx(M_TRUE, abs=0.03)
    assert interface["asr_1mpa_ohm_cm2"] == pytest.approx(ASR1_TRUE, rel=0.05)
    lo, hi = interface["exponent_interval"]
    assert lo < M_TRUE < hi
    lo, hi = fits["R1"]["fit"]["exponent_interval"]
    assert lo < 0.0 < hi  # the pressure-free arc: no pressure dependence found
    assert [round(p["pressure_megapascal"]) for p in fits["R2"]["points"]] == list(PRESSURES)
    html = files.html.read_text(encoding="utf-8")
    assert "Stack pressure: impedance" in html


def test_sweeps_at_one_pressure_or_without_area_give_no_power_law(tmp_path):
    samples, spectra = _eis_series()
    flat = samples.with_columns(pl.lit(10.0).alias("pressure_megapascal"))
    files = report_run(
        RunData(samples=flat, spectra=spectra, meta=_meta(AREA)), tmp_path / "flat", circuit=CIRCUIT
    )
    assert not {n for n in _names(files.fits) if "pressure" in n}
    assert "pressure" in _names(files.figures)  # the pressure is still shown against time
    files = report_run(
        RunData(samples=samples, spectra=spectra, meta=_meta(None)), tmp_path / "noarea",
        circuit=CIRCUIT,
    )  # fmt: skip
    assert not {n for n in _names(files.fits) if "pressure" in n}
    assert "the cell area is unknown: no ASR fit" in files.html.read_text(encoding="utf-8")
