"""Report figures: each renders to a PNG of the expected size with units on every labelled axis."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

pytest.importorskip("matplotlib")

from report_data import CIRCUIT, ccd_samples, conductivity_points, cycling_samples, spectra

from cellbench.analysis.ccd import critical_current_density
from cellbench.analysis.conductivity import choose_model, fit_all
from cellbench.analysis.cycling import cycle_summary
from cellbench.analysis.drt import drt
from cellbench.analysis.eis_fit import fit_circuit
from cellbench.analysis.fade import analyze_fade, fit_growth
from cellbench.analysis.report import (
    EisCurve,
    ReportError,
    dqdv_with_peaks,
    plot_arrhenius,
    plot_bode,
    plot_capacity,
    plot_ccd,
    plot_dqdv,
    plot_drt,
    plot_eis_parameters,
    plot_fade,
    plot_nyquist,
    plot_time_series,
    png_bytes,
    retention_series,
)
from cellbench.analysis.report.style import DPI

#: Axis labels that are counts, so carry no unit.
DIMENSIONLESS = {"Cycle number", "Sweep number"}


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def all_axes(fig):
    out = []
    for ax in fig.axes:
        out.append(ax)
        out.extend(getattr(ax, "child_axes", []))  # secondary axes (°C, Hz, retention)
    return out


def check(fig, min_labels: int = 2) -> bytes:
    """Render; the PNG has the figure's pixel size; every axis showing tick labels has a label
    with a unit (``quantity / unit``) unless it is a count."""
    png = png_bytes(fig)
    w, h = fig.get_size_inches()
    assert png_size(png) == (round(w * DPI), round(h * DPI))
    assert len(png) > 20_000  # a figure with data, not a blank canvas
    n = 0
    for ax in all_axes(fig):
        for axis in (ax.xaxis, ax.yaxis):
            shown = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            if not axis.get_visible() or not shown:
                continue
            text = axis.get_label_text()
            assert text, (
                f"an axis with tick labels {[t.get_text() for t in shown[:3]]} has no label"
            )
            assert " / " in text or text in DIMENSIONLESS, f"no unit in axis label {text!r}"
            n += 1
    assert n >= min_labels
    return png


def labels(fig) -> set[str]:
    return {a.get_label_text() for ax in all_axes(fig) for a in (ax.xaxis, ax.yaxis)} - {""}


@pytest.fixture(scope="module")
def samples() -> pl.DataFrame:
    return cycling_samples()


@pytest.fixture(scope="module")
def summary(samples) -> pl.DataFrame:
    return cycle_summary(samples)


@pytest.fixture(scope="module")
def fits():
    sp = spectra()
    out = []
    for k in range(sp["sweep_index"].max() + 1):
        s = sp.filter(pl.col("sweep_index") == k)
        z = s["z_real_ohm"].to_numpy() + 1j * s["z_imag_ohm"].to_numpy()
        out.append(fit_circuit(CIRCUIT, s["frequency_hertz"].to_numpy(), z))
    return out


def test_time_series_has_voltage_current_temperature_panels(samples):
    fig = plot_time_series(samples)
    check(fig, min_labels=4)
    assert {"Voltage / V", "Current / mA", "Temperature / °C", "Time / h"} <= labels(fig)
    assert len(fig.axes) == 3
    # alternate cycles shaded: one collection of spans per panel
    assert all(len(ax.collections) == 1 for ax in fig.axes)


def test_time_series_without_temperature_has_two_panels(samples):
    fig = plot_time_series(samples.drop("temperature_celsius").filter(pl.col("cycle_count") < 3))
    check(fig)
    assert len(fig.axes) == 2


def test_capacity_with_fade_fit_and_end_of_life(summary):
    x, y, ref = retention_series(summary)
    fade = analyze_fade(x, y, threshold=0.95)
    fig = plot_capacity(summary, fade=fade, reference_capacity_ampere_hour=ref)
    check(fig, min_labels=4)
    assert {"Capacity / mAh", "Coulombic eff. / %", "Retention / %", "Cycle number"} <= labels(fig)
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "fit" in legend and "95 % retention" in legend


def test_capacity_axis_keeps_the_data_readable_when_end_of_life_is_far(summary):
    x, y, ref = retention_series(summary)
    fade = analyze_fade(x, y, threshold=0.5)
    assert fade.end_of_life.cycles > 5 * x.max()
    cap = plot_capacity(summary, fade=fade, reference_capacity_ampere_hour=ref)
    assert cap.axes[0].get_xlim()[1] < 1.1 * x.max()
    legend = " ".join(t.get_text() for t in cap.axes[0].get_legend().get_texts())
    assert "beyond this axis" in legend
    ret = plot_fade(x, y, fade)
    check(ret)
    assert ret.axes[0].get_xlim()[1] >= fade.end_of_life.cycles


def test_dqdv_coloured_by_cycle_with_peaks(samples):
    curves, peaks = dqdv_with_peaks(samples, [1, 6, 12])
    assert set(curves["cycle_count"].unique()) == {1, 6, 12}
    # the plateau of the synthetic OCV at x = 0.5 is a dQ/dV peak near 3.7 V in every cycle
    assert peaks.filter((pl.col("position") - 3.7).abs() < 0.04)["cycle_count"].n_unique() == 3
    fig = plot_dqdv(curves, peaks=peaks)
    check(fig, min_labels=3)  # voltage, dQ/dV, and the colour bar's cycle number
    assert "Voltage / V" in labels(fig)


def test_nyquist_equal_aspect_with_fits(fits):
    fig = plot_nyquist([EisCurve.from_fit(fits[0], "first"), EisCurve.from_fit(fits[-1], "last")])
    check(fig)
    ax = fig.axes[0]
    assert ax.get_aspect() == 1.0
    assert {"Z′ / Ω", "−Z″ / Ω"} == labels(fig)


def test_bode_has_magnitude_phase_and_residual_panels(fits):
    fig = plot_bode(EisCurve.from_fit(fits[0]))
    check(fig, min_labels=4)
    assert {"|Z| / Ω", "−Phase / °", "Residual / %", "Frequency / Hz"} <= labels(fig)
    no_fit = plot_bode(EisCurve(fits[0].frequency_hz, fits[0].z_data))
    assert len(no_fit.axes) == 2


def test_drt_marks_peaks_and_has_frequency_axis(fits):
    res = drt(fits[0].frequency_hz, fits[0].z_data)
    fig = plot_drt([res], labels=["sweep 0"])
    check(fig, min_labels=3)
    assert "Frequency 1/(2πτ) / Hz" in labels(fig)
    assert len(fig.axes[0].texts) == len(res.peaks) >= 1


def test_eis_parameters_against_cycle(fits):
    table = pl.DataFrame(
        {
            "cycle_count": [1, 5, 10],
            "R1": [f.values["R1"] for f in fits[3:]],
            "R1_stderr": [f.stderr["R1"] for f in fits[3:]],
            "R0": [f.values["R0"] for f in fits[3:]],
        }
    )
    fig = plot_eis_parameters(table, {"R0": "ohm", "R1": "ohm", "CPE1.n": ""})
    check(fig)
    assert {"R0 / Ω", "R1 / Ω", "Cycle number"} <= labels(fig)
    growth = fit_growth([1, 5, 10], table["R1"].to_numpy(), models=("linear",))[0]
    fig = plot_eis_parameters(table, {"R0": "ohm", "R1": "ohm"}, growth={"R1": growth})
    check(fig)
    legend = fig.axes[1].get_legend().get_texts()[0].get_text()
    assert legend.startswith("linear growth") and "k = 1.5" in legend  # synthetic: 1.5 ohm/cycle


def test_arrhenius_states_activation_energy_and_celsius_axis():
    t, sigma = conductivity_points()
    fits = fit_all(t, sigma)
    best = choose_model(fits)
    fig = plot_arrhenius(best)
    check(fig, min_labels=3)
    assert {"1000/T / K⁻¹", "log₁₀(σ / S cm⁻¹)", "Temperature / °C"} <= labels(fig)
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert f"{best.activation_energy_ev:.3f} eV" in legend and "CI" in legend


def test_ccd_staircase_marks_the_short():
    df = ccd_samples()
    res = critical_current_density(df, 0.785)
    assert res.shorted
    fig = plot_ccd(df, res)
    check(fig, min_labels=3)
    assert {"Current density / mA cm⁻²", "Voltage / mV", "Time / min"} <= labels(fig)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any("short" in t and "1 mA" in t for t in texts)


def test_bad_input_gives_a_report_error():
    with pytest.raises(ReportError, match="voltage_volt"):
        plot_time_series(pl.DataFrame({"test_time_second": [0.0], "current_ampere": [0.0]}))
    with pytest.raises(ReportError, match="equal-length"):
        EisCurve(np.ones(3), np.ones(4, dtype=complex))
    with pytest.raises(ReportError, match="reference_capacity"):
        s = pl.DataFrame({"cycle_count": [1, 2, 3, 4, 5], "discharge_capacity_ampere_hour": 1.0})
        fade = analyze_fade([1, 2, 3, 4, 5], [1.0, 0.99, 0.98, 0.97, 0.96])
        plot_capacity(s, fade=fade)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ReportError, match=r"cellbench\[report\]"):
        plot_arrhenius(None)


def test_analysis_imports_without_matplotlib():
    code = (
        "import sys, cellbench.analysis.report, cellbench.cli.report; "
        "sys.exit('matplotlib' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
