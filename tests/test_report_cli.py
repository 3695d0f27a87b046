"""``cellbench analyze ... --report DIR``: each analysis also writes its report."""

from __future__ import annotations

import json

import polars as pl
import pytest

pytest.importorskip("matplotlib")

from report_data import ccd_samples, conductivity_points, cycling_samples, spectra

from cellbench.cli.main import main
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run


def _run(root, name, samples, area_cm2=0.785):
    meta = RunMeta(run_id=name, start_time="2026-01-01T00:00:00Z", cell=Cell(area_cm2=area_cm2))
    w = create_run(root, meta)
    w.append("samples", samples)
    w.close()
    return root / name


def _figures(out):
    return {p.name for p in out.glob("*.png")}


def test_analyze_cycling_and_fade_with_report(tmp_path, capsys):
    run = _run(tmp_path, "cyc", cycling_samples(cycles=6))
    out = tmp_path / "cycling-report"
    assert main(["analyze", "cycling", str(run), "--json", "--report", str(out)]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 6  # stdout stays clean JSON
    assert f"report: {out / 'report.html'}" in captured.err
    assert {"voltage_current_temperature.png", "capacity.png", "dqdv.png"} <= _figures(out)
    out = tmp_path / "fade-report"
    assert main(["analyze", "fade", str(run), "--report", str(out)]) == 0
    assert _figures(out) == {"retention.png"}
    assert (out / "fade.json").is_file() and (out / "retention.parquet").is_file()


def test_analyze_ccd_with_report(tmp_path):
    df = ccd_samples()
    n = df.height
    df = df.with_columns(
        pl.lit("sym1").alias("channel"),
        (pl.col("test_time_second") + 1.7e9).alias("unix_time_second"),
        pl.lit(1, dtype=pl.Int32).alias("cycle_count"),
        pl.lit(1, dtype=pl.Int32).alias("step_count"),
        pl.lit(0, dtype=pl.Int32).alias("step_index"),
    )
    assert df.height == n
    run = _run(tmp_path, "ccd", df)
    out = tmp_path / "ccd-report"
    assert main(["analyze", "ccd", str(run), "--report", str(out)]) == 0
    assert _figures(out) == {"ccd.png"}
    assert json.loads((out / "ccd.json").read_text())["shorted"] is True


def test_analyze_eis_and_conductivity_with_report(tmp_path):
    sweep = spectra(temperatures=(25.0,), cycles=(1,))
    csv = tmp_path / "cell.csv"
    sweep.select("frequency_hertz", "z_real_ohm", "z_imag_ohm").write_csv(csv)
    out = tmp_path / "eis-report"
    assert (
        main(["analyze", "eis", str(csv), "--circuit", "R0-p(R1,CPE1)", "--report", str(out)]) == 0
    )
    assert {"nyquist.png", "bode.png", "drt.png"} <= _figures(out)
    fits = json.loads((out / "eis_fits.json").read_text())
    assert fits["circuit"] == "R0-p(R1,CPE1)"
    t, sigma = conductivity_points()
    data = tmp_path / "sigma.csv"
    pl.DataFrame(
        {"temperature_celsius": t, "conductivity_siemens_per_centimeter": sigma}
    ).write_csv(data)
    out = tmp_path / "cond-report"
    assert main(["analyze", "conductivity", str(data), "--report", str(out)]) == 0
    assert _figures(out) == {"arrhenius.png"}
    chosen = json.loads((out / "conductivity_fit.json").read_text())["chosen"]
    assert abs(chosen["activation_energy_ev"] - 0.35) < 0.05
