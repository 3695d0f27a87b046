"""``cellbench convert`` and ``cellbench inspect`` through main([...])."""

from __future__ import annotations

import json

import polars as pl
import pytest

from cellbench.analysis.readers import read
from cellbench.cli.main import main


def test_convert_mpr_to_parquet_and_back(shared_data, tmp_path, capsys):
    src = shared_data / "cycling" / "biol.mpr"
    assert main(["convert", str(src), "--to", "parquet", "--out", str(tmp_path)]) == 0
    out = tmp_path / "biol.parquet"
    assert f"-> {out} (biologic-mpr, samples, 23561 rows)" in capsys.readouterr().out
    back = read(out)
    assert back.format == "bdf-parquet"
    assert back.frame.equals(read(src).frame)


def test_convert_spectra_of_mixed_file_to_bdf_csv(shared_data, tmp_path):
    src = shared_data / "cycling" / "biol.mpr"
    code = main(["convert", str(src), "--to", "bdf-csv", "--out", str(tmp_path), "--kind",
                 "spectra"])  # fmt: skip
    assert code == 0
    df = pl.read_csv(tmp_path / "biol.csv")
    assert df.height == 310
    assert {"frequency_hertz", "z_real_ohm", "z_imag_ohm", "sweep_index"} <= set(df.columns)
    assert read(tmp_path / "biol.csv").frame.height == 310


def test_convert_several_files_one_bad(shared_data, tmp_path, capsys):
    good = shared_data / "eis" / "exampleData.csv"
    bad = shared_data / "cycling" / "bad" / "custom_truncated.csv"
    code = main(["convert", str(good), str(bad), "--to", "parquet", "--out", str(tmp_path)])
    assert code == 1
    captured = capsys.readouterr()
    assert "exampleData.parquet" in captured.out
    assert "custom_truncated.csv: line 80" in captured.err
    assert (tmp_path / "exampleData.parquet").is_file()
    assert not (tmp_path / "custom_truncated.parquet").exists()
    # existing output is kept unless --force
    assert main(["convert", str(good), "--to", "parquet", "--out", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(good), "--to", "parquet", "--out", str(tmp_path), "--force"]) == 0


def test_inspect_text(shared_data, capsys):
    assert main(["inspect", str(shared_data / "cycling" / "biol.mpr")]) == 0
    out = capsys.readouterr().out
    assert "format:   biologic-mpr" in out
    assert "rows:     23561" in out
    assert "also spectra" in out
    assert "cycles:   1 (1 .. 1)" in out
    assert "2017-03-15T10:22:54+00:00" in out


def test_inspect_json_and_warnings(shared_data, capsys):
    assert main(["inspect", "--json", str(shared_data / "eis" / "exampleDataGamryABORT.DTA")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "gamry-dta"
    assert info["rows"] == 72
    assert info["sweeps"] == 1
    assert any("aborted" in w for w in info["warnings"])


def test_inspect_unknown_file_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("nothing here\n")
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellbench: error: ") and "format not recognised" in err
    assert "\n" not in err


def test_convert_help_lists_formats(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--help"])
    assert exc.value.code == 0
    assert "neware-ndax" in capsys.readouterr().out


def test_convert_and_inspect_with_a_column_map(tmp_path, capsys):
    src = tmp_path / "rig.csv"
    src.write_text("Zeit (min);U (V);I (mA)\n0;3.50;5\n1;3.55;5\n2;3.60;5\n3;3.58;-5\n")
    cmap = tmp_path / "rig.json"
    cmap.write_text(
        '{"Zeit (min)": ["test_time_second", 60], "U (V)": "voltage_volt", '
        '"I (mA)": ["current_ampere", 0.001]}'
    )
    assert main(["inspect", str(src)]) == 1
    assert "--column-map" in capsys.readouterr().err
    assert main(["inspect", str(src), "--column-map", str(cmap), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["kind"], info["rows"]) == ("csv", "samples", 4)
    assert info["time_span_second"] == [0.0, 180.0]
    code = main(["convert", str(src), "--column-map", str(cmap), "--to", "parquet",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    back = read(tmp_path / "out" / "rig.parquet").frame
    assert back["current_ampere"].to_list() == pytest.approx([0.005, 0.005, 0.005, -0.005])
    assert back["voltage_volt"].to_list() == pytest.approx([3.50, 3.55, 3.60, 3.58])


def test_a_column_map_naming_a_frequency_reads_spectra(tmp_path, capsys):
    src = tmp_path / "lab_eis.csv"
    src.write_text("f (kHz);Re (Ohm);Im (Ohm)\n10;1.0;-0.5\n1;2.0;-1.0\n0.1;3.0;-0.2\n")
    cmap = tmp_path / "eis.json"
    cmap.write_text(
        '{"f (kHz)": ["frequency_hertz", 1000], "Re (Ohm)": "z_real_ohm", "Im (Ohm)": "z_imag_ohm"}'
    )
    assert main(["inspect", str(src), "--column-map", str(cmap), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["rows"], info["frequency_hertz"]) == ("spectra", 3, [100.0, 1e4])
    out = tmp_path / "out"
    assert main(["convert", str(src), "--column-map", str(cmap), "--to", "bdf-csv",
                 "--out", str(out)]) == 0  # fmt: skip
    back = pl.read_csv(out / "lab_eis.csv")
    assert back["z_imag_ohm"].to_list() == pytest.approx([-0.5, -1.0, -0.2])
