"""Impedance readers on the real files in ../shared/data/eis (point counts from its README)."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.analysis.readers import ReaderError, ReaderWarning, detect_format, read
from cellbench.core.schema import validate_frame


def _read(path):
    result = read(path)
    validate_frame("spectra", result.frame)
    assert result.kind == "spectra"
    return result


@pytest.mark.parametrize(
    ("name", "fmt", "points", "f_max", "f_min"),
    [
        ("exampleData.csv", "eis-csv3", 66, 1e4, 3.1623e-3),
        ("exampleDataBioLogic.mpt", "biologic-mpt", 43, 1000.32, 0.0168955),
        ("exampleDataGamry.DTA", "gamry-dta", 72, 200015.6, 0.0158898),
        ("exampleDataAutolab.txt", "z60w", 41, 1e4, 0.1),
        ("exampleDataCHInstruments.txt", "chi-txt", 73, 9.961e4, 0.1),
        ("exampleDataParstat.txt", "parstat-txt", 31, 1e4, 10.0),
        ("Circuit1_EIS_1.z", "zplot-z", 48, 5e4, 1.0),
        ("Circuit2_EIS_1.z", "zplot-z", 56, 3e5, 1.0),
        ("Circuit3_EIS_1.z", "zplot-z", 53, 1.5e5, 1.0),
    ],
)
def test_real_spectra(shared_data, name, fmt, points, f_max, f_min):
    path = shared_data / "eis" / name
    assert detect_format(path) == fmt
    df = _read(path).frame
    assert df.height == points
    assert df["frequency_hertz"].max() == pytest.approx(f_max, rel=1e-4)
    assert df["frequency_hertz"].min() == pytest.approx(f_min, rel=1e-4)
    # Every file here is capacitive in its lower-frequency half (batteries are inductive at the
    # top): Z'' negative there is the instrument convention, whatever sign the vendor writes.
    low = df.filter(df["frequency_hertz"] <= df["frequency_hertz"].median())
    assert low["z_imag_ohm"].median() < 0
    assert np.median(df["z_real_ohm"].to_numpy()) > 0


def test_biologic_mpt_values_and_sign(shared_data):
    result = _read(shared_data / "eis" / "exampleDataBioLogic.mpt")
    first = result.frame.row(0, named=True)
    # file: freq 1.0003201E+003, Re(Z) 6.5470886E+001, -Im(Z) 3.8998979E-001
    assert first["frequency_hertz"] == pytest.approx(1000.3201)
    assert first["z_real_ohm"] == pytest.approx(65.470886)
    assert first["z_imag_ohm"] == pytest.approx(-0.38998979)
    assert first["dc_current_ampere"] == pytest.approx(-4.8041187e-5)
    assert result.metadata["technique"].startswith("Potentio Electrochemical Impedance")
    assert result.metadata["start_time_known"]


def test_gamry_aborted_sweep_kept_and_reported(shared_data):
    path = shared_data / "eis" / "exampleDataGamryABORT.DTA"
    with pytest.warns(ReaderWarning, match="experiment aborted: 72 points of 98 planned"):
        result = _read(path)
    assert result.metadata["aborted"] is True
    assert result.frame.height == 72
    # rows stop at the table's end, the FRACURVE block after the abort is not read as impedance
    assert result.frame["frequency_hertz"].min() == pytest.approx(0.0158898)
    full = _read(shared_data / "eis" / "exampleDataGamry.DTA")
    assert full.metadata["aborted"] is False
    assert full.frame["test_time_second"][-1] == 861.0
    assert full.frame["dc_voltage_volt"][0] == pytest.approx(-0.3413299)


def test_zplot_short_file_warns(shared_data):
    with pytest.warns(ReaderWarning, match="announces 56 points, file holds 21"):
        result = _read(shared_data / "eis" / "exampleDataZPlot.z")
    assert result.frame.height == 21


def test_parstat_drops_dc_records(shared_data):
    result = _read(shared_data / "eis" / "exampleDataParstat.txt")
    assert result.metadata["dc_records_dropped"] == 781
    assert result.frame["test_time_second"][0] == pytest.approx(7639.602)


def test_gamry_truncated_row_named(shared_data, tmp_path):
    lines = (shared_data / "eis" / "exampleDataGamry.DTA").read_bytes().split(b"\n")
    idx = next(i for i, ln in enumerate(lines) if ln.startswith(b"\t3\t7\t100265.6"))
    lines[idx] = b"\t3\t7"
    path = tmp_path / "cut.DTA"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ReaderError, match=rf"cut\.DTA: line {idx + 1}, column 'Freq'"):
        read(path)


def test_mpt_decimal_comma(shared_data, tmp_path):
    text = (shared_data / "eis" / "exampleDataBioLogic.mpt").read_bytes().decode("latin-1")
    head, _, body = text.partition("freq/Hz")
    body = body.replace(".", ",")
    path = tmp_path / "comma.mpt"
    path.write_bytes((head + "freq/Hz" + body).encode("latin-1"))
    df = read(path).frame
    assert df.height == 43
    assert df["z_real_ohm"][0] == pytest.approx(65.470886)


def test_mpt_bad_header_count(tmp_path):
    path = tmp_path / "bad.mpt"
    path.write_text("EC-Lab ASCII FILE\nNb header lines : 999\n\nPEIS\n")
    with pytest.raises(ReaderError, match="line 2: header count 999"):
        read(path)
