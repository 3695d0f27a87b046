import polars as pl
import pytest

from cellbench.core import schema
from cellbench.core.errors import SchemaError


def test_validate_frame_lists_every_problem():
    df = pl.DataFrame({"channel": ["a"], "test_time_second": [1], "voltage_volt": [3.7]})
    with pytest.raises(SchemaError) as info:
        schema.validate_frame("samples", df)
    problems = info.value.problems
    assert any("test_time_second" in p and "Int64" in p for p in problems)
    for missing in ("unix_time_second", "current_ampere", "cycle_count", "step_index"):
        assert any(missing in p for p in problems)


def test_conform_casts_and_keeps_extras():
    df = pl.DataFrame(
        {
            "vendor_extra": [1],
            "channel": ["a"],
            "test_time_second": [0],
            "unix_time_second": [1.7e9],
            "voltage_volt": [3],
            "current_ampere": [0.001],
            "cycle_count": [1],
            "step_count": [1],
            "step_index": [0],
        }
    )
    out = schema.conform("samples", df)
    assert out.schema["test_time_second"] == pl.Float64
    assert out.schema["cycle_count"] == pl.Int32
    assert out.columns[-1] == "vendor_extra"


def test_run_meta_roundtrip_and_errors():
    meta = schema.RunMeta(run_id="r1", start_time="2026-01-01T00:00:00Z")
    meta.cell.area_cm2 = 1.0
    again = schema.RunMeta.from_dict(meta.to_dict())
    assert again == meta
    bad = {"run_id": "", "start_time": 3, "status": "exploded", "cell": {"area_cm2": -1, "x": 1}}
    with pytest.raises(SchemaError) as info:
        schema.RunMeta.from_dict(bad)
    text = str(info.value)
    for word in ("run_id", "start_time", "exploded", "area_cm2", "'x'"):
        assert word in text


def test_unknown_table():
    with pytest.raises(SchemaError):
        schema.schema("nope")
