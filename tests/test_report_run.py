"""Report documents: self-contained HTML, the files written, the run report and the CLI."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import polars as pl
import pytest

pytest.importorskip("matplotlib")

from report_data import ccd_samples, conductivity_points, cycling_samples, spectra

from cellbench.analysis.report import (
    Report,
    ReportError,
    fit_sweeps,
    plot_arrhenius,
)
from cellbench.cli.main import main
from cellbench.cli.report import write_report
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq.store import create_run

ATTR = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def assert_self_contained(html: str) -> int:
    """Every src/href is a data: URI or an in-page anchor; returns the number of data: images."""
    assert "<link" not in html.lower() and "@import" not in html
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html), "CSS points outside the file"
    images = 0
    for attr, value in ATTR.findall(html):
        if attr.lower() == "src":
            assert value.startswith("data:image/png;base64,"), value[:60]
            images += 1
        else:
            assert value.startswith("#"), f"external link {value!r}"
    return images


def test_report_writes_html_png_csv_parquet_json(tmp_path):
    from cellbench.analysis.conductivity import choose_model, fit_all

    t, sigma = conductivity_points()
    rep = Report("Test report", {"cell": "pellet <7> & co"})
    rep.section("Conductivity")
    rep.figure("arrhenius", plot_arrhenius(choose_model(fit_all(t, sigma))), "Arrhenius plot")
    frame = pl.DataFrame({"a": [1.0, float("nan")], "names": [["R0", "R1"], []]})
    rep.table("points", frame, "Points")
    rep.fit("fit", {"ea": np.float64(0.35), "ci": (0.3, float("inf")), "arr": np.arange(2)}, "Fit")
    rep.note("a note")
    files = rep.write(tmp_path / "out")
    names = sorted(p.name for p in files.all)
    assert names == sorted(
        ["report.html", "arrhenius.png", "points.csv", "points.parquet", "fit.json"]
    )
    html = files.html.read_text(encoding="utf-8")
    assert assert_self_contained(html) == 1
    assert "pellet &lt;7&gt; &amp; co" in html and "a note" in html
    assert json.loads((tmp_path / "out" / "fit.json").read_text()) == {
        "ea": 0.35,
        "ci": [0.3, None],
        "arr": [0, 1],
    }
    assert pl.read_parquet(tmp_path / "out" / "points.parquet")["names"].to_list() == [
        ["R0", "R1"],
        [],
    ]
    assert pl.read_csv(tmp_path / "out" / "points.csv")["names"].to_list()[0] == "R0; R1"
    png = (tmp_path / "out" / "arrhenius.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) < 300_000


def test_report_names_are_checked():
    rep = Report("x")
    rep.note("n")
    rep.table("t", pl.DataFrame({"a": [1]}))
    with pytest.raises(ReportError, match="already has a table"):
        rep.table("t", pl.DataFrame({"a": [1]}))
    with pytest.raises(ReportError, match="file stem"):
        rep.table("../evil", pl.DataFrame({"a": [1]}))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    meta = RunMeta(
        run_id="synthetic-run",
        start_time="2026-01-01T00:00:00Z",
        protocol={"name": "synthetic"},
        cell=Cell(name="cell A", chemistry="Li|LPSCl|NMC", area_cm2=0.785, thickness_cm=0.06),
        ground_truth={"params": {"r0_ea_ev": 0.3, "ocv_volt": [3.0, 4.2]}, "soc": 0.5},
    )
    w = create_run(root, meta)
    w.append("samples", cycling_samples(cycles=8))
    w.append("spectra", spectra())
    w.event("step_start", "routine: not listed", test_time_second=1.0)
    w.event(
        "gap",
        "smu1 lost for 12 s",
        severity="warning",
        channel="cell1",
        test_time_second=500.0,
        duration_second=12.0,
    )
    w.close()
    return root / "synthetic-run"


def test_cellbench_report_of_a_run_folder(run_folder, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(run_folder), "--out", str(out)]) == 0
    stems = {
        "voltage_current_temperature",
        "capacity",
        "retention",
        "dqdv",
        "nyquist",
        "bode",
        "eis_parameters",
        "drt",
        "arrhenius",
    }
    tables = {"cycles", "dqdv_peaks", "eis_fits", "conductivity", "events"}
    fits = {"fade", "eis_fits", "drt", "conductivity_fit", "ground_truth"}
    expected = (
        {"report.html"}
        | {f"{s}.png" for s in stems}
        | {f"{t}.{ext}" for t in tables for ext in ("csv", "parquet")}
        | {f"{f}.json" for f in fits}
    )
    assert {p.name for p in out.iterdir()} == expected
    html = (out / "report.html").read_text(encoding="utf-8")
    assert assert_self_contained(html) == len(stems)
    assert "synthetic-run" in html and "cell A" in html and "area 0.785 cm²" in html
    assert "r0_ea_ev" in html  # the simulated cell's ground truth, flattened, lists left out
    events = pl.read_csv(out / "events.csv")
    assert events["kind"].to_list() == ["gap"] and events["duration_second"][0] == 12.0
    for s in stems:
        assert 10_000 < (out / f"{s}.png").stat().st_size < 300_000
    # the Arrhenius fit recovers the synthetic R0's activation energy (0.3 eV)
    cond = json.loads((out / "conductivity_fit.json").read_text())["chosen"]
    lo, hi = cond["activation_energy_ev_ci"]
    assert lo < 0.3 < hi or abs(cond["activation_energy_ev"] - 0.3) < 0.03
    assert str(out / "report.html") in capsys.readouterr().out


def test_cellbench_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path), "--out", str(tmp_path / "o"), "--dqdv-cycles", "a,b"])
    assert exc.value.code == 2


def _args(tmp_path, name):
    return argparse.Namespace(report=tmp_path / name, file="input.csv")


def test_write_report_for_each_analysis_kind(tmp_path, capsys):
    from cellbench.analysis.ccd import critical_current_density
    from cellbench.analysis.fade import analyze_fade

    assert write_report("fade", argparse.Namespace(report=None), cycles=[1], retention=[1]) is None
    x = np.arange(1, 21, dtype=float)
    y = 1 - 0.004 * x
    files = write_report(
        "fade", _args(tmp_path, "fade"), cycles=x, retention=y, fade=analyze_fade(x, y)
    )
    assert {p.name for p in files.figures} == {"retention.png"}
    t, sigma = conductivity_points()
    files = write_report(
        "conductivity",
        _args(tmp_path, "cond"),
        datasets=[
            {"temperature_celsius": t, "conductivity_s_per_cm": sigma, "tag": "a"},
            {"temperature_celsius": t, "conductivity_s_per_cm": sigma * 2, "tag": "b"},
        ],
    )
    assert {p.name for p in files.figures} == {"arrhenius_a.png", "arrhenius_b.png"}
    df = ccd_samples()
    files = write_report(
        "ccd",
        _args(tmp_path, "ccd"),
        samples=df,
        area_cm2=0.785,
        result=critical_current_density(df, 0.785),
    )
    assert {p.name for p in files.figures} == {"ccd.png"}
    assert json.loads((tmp_path / "ccd" / "ccd.json").read_text())["shorted"] is True
    sp = spectra(temperatures=(25.0, 25.0), cycles=(1, 9))
    fits = fit_sweeps(sp, "R0-p(R1,CPE1)").fits  # as the analyze command made them
    files = write_report("eis", _args(tmp_path, "eis"), spectra=sp, fits=fits)
    assert {p.name for p in files.figures} == {
        "nyquist.png",
        "bode.png",
        "eis_parameters.png",
        "drt.png",
    }
    one = cycling_samples(cycles=4)
    two = pl.concat([one, one.with_columns(pl.lit("cell2").alias("channel"))])
    files = write_report("cycling", _args(tmp_path, "cyc"), samples=two, dqdv_cycles=[1, 4])
    assert {"voltage_current_temperature_cell2.png", "capacity_cell1.png", "dqdv_cell2.png"} <= {
        p.name for p in files.figures
    }
    for sub in ("fade", "cond", "ccd", "eis", "cyc"):
        assert_self_contained((tmp_path / sub / "report.html").read_text(encoding="utf-8"))
    assert capsys.readouterr().err.count("report: ") == 5
    with pytest.raises(Exception, match="unknown report kind"):
        write_report("nyquist", _args(tmp_path, "x"))


def test_run_report_states_what_it_cannot_analyse(tmp_path):
    from cellbench.analysis.report import RunData, report_run

    files = report_run(RunData(spectra=spectra(cycles=(1, 1, 1, 1, 5, 10))), tmp_path)
    html = files.html.read_text(encoding="utf-8")
    assert "thickness and area are unknown" in html  # no geometry: no conductivity
    assert not (tmp_path / "arrhenius.png").exists()
    files = report_run(RunData(), tmp_path / "empty")
    assert "no samples and no spectra" in files.html.read_text(encoding="utf-8")


@pytest.mark.shared_data
def test_report_of_a_vendor_file(shared_data, tmp_path):
    out = tmp_path / "ndax"
    path = shared_data / "cycling" / "20260302_IFE_BTS85_2_9_8_1.ndax"
    assert main(["report", str(path), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "voltage_current_temperature.png", "cycles.csv"} <= names
    html = (out / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    # the reader's warnings, in the report (this file's: two auxiliary tables it skips)
    assert "reader: " in html and "channel type 102" in html


def test_run_report_of_two_channels_suffixes_every_file(tmp_path):
    from cellbench.analysis.report import RunData, report_run

    a = cycling_samples(cycles=3)
    b = a.with_columns(pl.lit("cell 2").alias("channel"), pl.col("voltage_volt") + 0.01)
    files = report_run(RunData(samples=pl.concat([a, b])), tmp_path, dqdv_cycles=[1, 3])
    names = {p.name for p in files.figures}
    for ch in ("cell1", "cell-2"):
        assert {f"voltage_current_temperature_{ch}.png", f"capacity_{ch}.png"} <= names
    assert (tmp_path / "cycles_cell-2.parquet").is_file()
    html = files.html.read_text(encoding="utf-8")
    assert "Cycling (cell 2)" in html
