"""Cycler exports as .xlsx workbooks, built here with the standard library (no spreadsheet
package is a dependency): the same maps and checks as the csv exports."""

from __future__ import annotations

import polars as pl
import pytest
from vendor_files import xlsx_bytes

from cellbench.analysis.readers import ReaderError, ReaderWarning, detect_format, read
from cellbench.core.schema import validate_frame


def _neware_rows(shared_data, n: int = 400) -> list[list[object]]:
    raw = pl.read_csv(shared_data / "cycling" / "neware_uio.csv", infer_schema=False).head(n)
    out: list[list[object]] = [raw.columns]
    for row in raw.iter_rows():
        out.append([float(v) if _is_number(v) else v for v in row])
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_neware_xlsx_equals_csv(shared_data, tmp_path):
    rows = _neware_rows(shared_data)
    path = tmp_path / "neware.xlsx"
    path.write_bytes(xlsx_bytes({"test": [["Neware BTSDA export"]], "record": rows}))
    assert detect_format(path) == "cycler-xlsx"
    with pytest.warns(ReaderWarning, match="data read from sheet 'record'"):
        result = read(path)
    assert result.format == "neware-xlsx"
    validate_frame("samples", result.frame)
    csv = tmp_path / "neware.csv"
    csv.write_text("\n".join(",".join(str(v) for v in r) for r in rows), encoding="utf-8")
    want = read(csv).frame
    assert result.frame.height == want.height == 400
    for col in ("voltage_volt", "current_ampere", "test_time_second", "unix_time_second",
                "discharging_capacity_ampere_hour"):  # fmt: skip
        assert result.frame[col].to_list() == pytest.approx(want[col].to_list())


def test_arbin_xlsx_with_excel_dates(tmp_path):
    header = ["Data_Point", "Test_Time(s)", "Date_Time", "Step_Index", "Cycle_Index",
              "Current(A)", "Voltage(V)", "Charge_Capacity(Ah)",
              "Discharge_Capacity(Ah)"]  # fmt: skip
    rows = [header]
    for k in range(6):
        rows.append([k + 1, k * 600.0, 42587.5 + k * 600 / 86400, 1 if k < 3 else 2, 1,
                     0.1 if k < 3 else -0.1, 3.0 + 0.1 * k, 0.0, 0.0])  # fmt: skip
    path = tmp_path / "arbin.xlsx"
    path.write_bytes(xlsx_bytes({"Channel_1-006": rows}))
    result = read(path)
    assert result.format == "arbin-xlsx"
    df = result.frame
    assert df["unix_time_second"][0] == pytest.approx((42587.5 - 25569) * 86400)
    assert df["step_index"].to_list() == [0, 0, 0, 1, 1, 1]


def test_landt_xlsx(tmp_path):
    rows = [["Record", "Cycle", "Step", "TestTime", "Current/mA", "Voltage/V", "SysTime"]]
    for k in range(5):
        rows.append([k + 1, 1, 1, f"00:0{k}:00", 2.0, 3.5 + 0.01 * k, f"2024-01-02 10:0{k}:00"])
    path = tmp_path / "landt.xlsx"
    path.write_bytes(xlsx_bytes({"Record": rows}))
    df = read(path).frame
    assert df["test_time_second"].to_list() == [0.0, 60.0, 120.0, 180.0, 240.0]
    assert df["current_ampere"][0] == pytest.approx(2e-3)
    assert df["charging_capacity_ampere_hour"][-1] == pytest.approx(2e-3 * 240 / 3600)


def test_xlsx_errors_name_sheet_rows(tmp_path):
    rows = [["Record", "Cycle", "Step", "TestTime", "Current/mA", "Voltage/V"],
            [1, 1, 1, 0, 1.0, 3.5], [2, 1, 1, 1, 1.0, "n/a"]]  # fmt: skip
    path = tmp_path / "bad.xlsx"
    path.write_bytes(xlsx_bytes({"Record": rows}))
    with pytest.raises(ReaderError, match=r"bad\.xlsx: line 3, column 'Voltage/V': 'n/a' is not"):
        read(path)
    path.write_bytes(xlsx_bytes({"Notes": [["hello"]]}))
    with pytest.raises(ReaderError, match=r"no sheet with a cycler header among \['Notes'\]"):
        read(path)
    path.write_bytes(xlsx_bytes({"Record": rows})[:300])
    with pytest.raises(ReaderError, match="damaged workbook"):
        read(path)
