"""The cell build record (station [cell.build], --cell build.KEY=VALUE, run.json) and the export
of a run's metadata as the BDF sidecar and BattINFO JSON-LD."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cellbench.analysis.metadata_export import battinfo_jsonld, battinfo_test_kind, bdf_metadata
from cellbench.cli.main import main
from cellbench.cli.run_cell import CellOptionError, parse_cell_options
from cellbench.core.errors import SchemaError
from cellbench.core.schema import Cell, CellBuild, RunMeta
from cellbench.daq.station import StationError, load_station
from cellbench.daq.store import create_run, open_run

FX = Path(__file__).resolve().parents[1] / "fixtures"

PROTOCOL = """
name = "conductivity 25-85 degC"
[safety]
temperature_max = "100 degC"
[[step]]
type = "temperature"
setpoint = "25 degC"
[[step]]
type = "eis"
start = "7 MHz"
stop = "1 Hz"
amplitude = "10 mV"
[[step]]
type = "loop"
repeat = 2
steps = [
  { type = "temperature", setpoint = "55 degC" },
  { type = "eis", start = "1 MHz", stop = "10 Hz", amplitude = "10 mV" },
]
"""

BUILD = {
    "batch": "LPSCl-2026-11-B",
    "build_date": "2026-11-28",
    "operator": "A. Tech",
    "electrolyte": "Li6PS5Cl",
    "electrolyte_mass_g": 0.1502,
    "electrolyte_thickness_cm": 0.0712,
    "relative_density": 0.87,
    "fabrication_pressure_megapascal": 375.0,
    "fabrication_temperature_celsius": 25.0,
    "stack_pressure_megapascal": 50.0,
    "positive_electrode_composition": "NMC811:Li6PS5Cl:VGCF 70:27:3 wt%",
    "positive_electrode_mass_g": 0.0123,
    "negative_electrode_composition": "Li-In",
    "electrode_contacts": "In foil",
}


def _meta() -> RunMeta:
    cell = Cell(
        name="SSB-B-03",
        chemistry="NMC811 | Li6PS5Cl | Li-In",
        area_cm2=0.785,
        thickness_cm=0.09,
        active_mass_g=0.0086,
        build=dict(BUILD),
    )
    return RunMeta(
        "run-7",
        "2026-12-01T10:00:00Z",
        status="completed",
        end_time="2026-12-01T16:00:00Z",
        cell=cell,
        protocol={"name": "conductivity 25-85 degC", "text": PROTOCOL, "safety": {}},
        station={"name": "pellet", "instruments": [{"name": "z", "driver": "e4990a"}]},
        software_version="0.1.0",
    )


def test_build_record_round_trips_through_run_json(tmp_path):
    meta = _meta()
    assert isinstance(meta.cell.build, CellBuild) and meta.cell.problems() == []
    with create_run(tmp_path, meta) as w:
        w.event("note", "x")
    back = open_run(tmp_path / "run-7").meta
    assert back.cell.build == meta.cell.build
    assert back.cell.build.relative_density == 0.87
    # a run.json without a build record (older runs) still reads
    old = RunMeta.from_dict({"run_id": "a", "start_time": "t", "cell": {"name": "x"}})
    assert old.cell.build is None
    with pytest.raises(SchemaError) as err:
        RunMeta.from_dict(
            {"run_id": "a", "start_time": "t", "cell": {"build": {"relative_density": 93, "x": 1}}}
        )
    text = str(err.value)
    assert "cell.build.relative_density: must be a fraction in (0, 1]" in text
    assert "cell.build.x: unknown build key" in text


def test_station_cell_build_table_with_lines(tmp_path):
    station = (FX / "stations" / "pellet_station.toml").read_text(encoding="utf-8")
    station = station.replace('cell = "../sim/', f'cell = "{FX / "sim"}/')
    good = station.replace(
        "thickness_cm = 0.1\n",
        'thickness_cm = 0.1\n\n[cell.build]\nbatch = "B7"\nrelative_density = 0.93\n'
        "fabrication_pressure_megapascal = 300\n",
        1,
    )
    assert good != station
    (tmp_path / "good.toml").write_text(good, encoding="utf-8")
    cell = load_station(tmp_path / "good.toml").cell
    assert cell.build.batch == "B7" and cell.build.fabrication_pressure_megapascal == 300.0
    bad = good.replace("relative_density = 0.93", 'relative_density = "93 %"')
    (tmp_path / "bad.toml").write_text(bad, encoding="utf-8")
    with pytest.raises(StationError) as err:
        load_station(tmp_path / "bad.toml")
    line = bad.splitlines().index('relative_density = "93 %"') + 1
    assert f":{line}:" in str(err.value) and "cell.build.relative_density" in str(err.value)


def test_cell_options_set_the_build_record():
    out = parse_cell_options(["build.batch=B9", "build.stack_pressure_megapascal=25"])
    assert out == {"build": {"batch": "B9", "stack_pressure_megapascal": 25.0}}
    with pytest.raises(CellOptionError, match=r"build\.relative_density must be a fraction"):
        parse_cell_options(["build.relative_density=1.2"])
    with pytest.raises(CellOptionError, match="unknown build key"):
        parse_cell_options(["build.colour=red"])


def test_bdf_sidecar_carries_the_build_and_the_conditions():
    doc = bdf_metadata(_meta(), source="/data/run-7")
    test = doc["battinfo_test"]["test"]
    assert test["identifier"] == "run-7" and test["kind"] == "impedance"
    start = int(dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC).timestamp())
    assert test["started_at"] == start and test["ended_at"] == start + 6 * 3600
    assert test["status"] == "completed" and test["protocol_name"] == "conductivity 25-85 degC"
    cond = test["conditions"]
    assert cond["temperature_setpoints_celsius"] == [25.0, 55.0]
    assert cond["eis_frequency_max_hertz"] == 7e6 and cond["eis_frequency_min_hertz"] == 1.0
    assert cond["stack_pressure_megapascal"] == 50.0
    assert all(k == k.lower() and " " not in k for k in cond)  # BattINFO condition key pattern
    inst = doc["battinfo_cell"]["cell_instance"]
    assert inst == {
        "name": "SSB-B-03",
        "batch_id": "LPSCl-2026-11-B",
        "manufactured_at": "2026-11-28",
    }
    assert doc["battinfo_test"]["provenance"]["source_type"] == "measurement"
    extras = doc["extras"]["cellbench_cell"]
    assert extras["area_cm2"] == 0.785 and extras["build"] == BUILD
    assert doc["bdf"]["source"] == "/data/run-7"
    json.dumps(doc, allow_nan=False)


def test_battinfo_jsonld_types_and_units():
    doc = battinfo_jsonld(_meta())
    assert doc["@context"][0] == "https://w3id.org/emmo/domain/battery/context"
    cell, test = doc["@graph"]
    assert cell["@type"] == "BatteryCell" and test["schema:object"] == {"@id": cell["@id"]}
    props = {p["rdfs:label"]: p for p in cell["hasProperty"]}
    assert props["electrode area"]["hasNumericalPart"]["hasNumberValue"] == 0.785
    assert props["electrode area"]["hasMeasurementUnit"] == "emmo:SquareCentiMetre"
    assert props["stack pressure"]["@type"][0] == "Pressure"
    el = cell["hasElectrolyte"]
    assert el["rdfs:label"] == "Li6PS5Cl"
    rel = next(p for p in el["hasProperty"] if p["rdfs:label"] == "relative density")
    assert (
        rel["@type"] == ["ConventionalProperty"]
        and rel["schema:propertyID"] == "cb:relative_density"
    )
    assert rel["hasNumericalPart"]["hasNumberValue"] == 0.87
    assert cell["hasPositiveElectrode"]["schema:description"].startswith("NMC811")
    assert cell["cb:batch"] == "LPSCl-2026-11-B"
    assert test["cb:testKind"] == "impedance"
    json.dumps(doc, allow_nan=False)


def test_test_kind_from_the_protocol_steps():
    meta = _meta()
    cyc = '[[step]]\ntype = "cc"\ncurrent = "1 mA"\nuntil = { voltage_above = "4.2 V" }\n'
    meta.protocol = {"text": cyc}
    assert battinfo_test_kind(meta) == "cycling"
    meta.protocol = {"text": "not toml ["}
    assert battinfo_test_kind(meta) == "other"


def test_runs_export_metadata_cli(tmp_path, capsys):
    with create_run(tmp_path, _meta()) as w:
        w.event("note", "x")
    out = tmp_path / "out"
    run = str(tmp_path / "run-7")
    assert main(["runs", "export", run, "--metadata", "bdf", "--out", str(out)]) == 0
    doc = json.loads((out / "run-7.bdf.meta.json").read_text())
    assert doc["battinfo_cell"]["cell_instance"]["batch_id"] == "LPSCl-2026-11-B"
    assert main(["runs", "export", run, "--metadata", "battinfo", "--out", str(out)]) == 0
    assert json.loads((out / "run-7.battinfo.jsonld").read_text())["@graph"][0]["@type"]
    assert main(["runs", "export", run, "--metadata", "bdf", "--out", str(out)]) == 1
    assert "exists; use --force" in capsys.readouterr().err
    assert main(["runs", "export", run, "--out", str(out)]) == 1
    assert "give --format" in capsys.readouterr().err


def test_runs_show_lists_the_build_record(tmp_path, capsys):
    with create_run(tmp_path, _meta()) as w:
        w.event("note", "x")
    assert main(["runs", "show", str(tmp_path / "run-7")]) == 0
    out = capsys.readouterr().out
    assert "build batch" in out and "LPSCl-2026-11-B" in out
    assert "build relative_density" in out and "0.87" in out
