"""Station files and protocol-on-station checks: cellbench.daq.station."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellbench.core.schema import Cell
from cellbench.daq.protocol import ProtocolError, load_protocol, parse_protocol
from cellbench.daq.station import (
    DRIVER_ROLES,
    EIS_FREQUENCY_RANGE_HERTZ,
    InstrumentSpec,
    SimulationSpec,
    Station,
    StationError,
    load_station,
    parse_station,
    validate_run,
)

PAIRS = [
    ("formation_cycling", "coin_cell_station"),
    ("eis_vs_temperature", "pellet_station"),
    ("ccd_symmetric", "symmetric_station"),
    ("interface_tracking", "ssb_station"),
    ("demo", "demo_station"),
]


@pytest.mark.parametrize(("protocol", "station"), PAIRS)
def test_example_pairs_validate(fixtures_dir: Path, protocol: str, station: str) -> None:
    st = load_station(fixtures_dir / "stations" / f"{station}.toml")
    p = load_protocol(fixtures_dir / "protocols" / f"{protocol}.toml")
    resolved = validate_run(p, st)
    assert resolved.is_resolved
    # The same as loading with the station's cell directly.
    assert resolved == load_protocol(p.path, cell=st.cell)


def test_every_station_fixture_loads(fixtures_dir: Path) -> None:
    files = sorted((fixtures_dir / "stations").glob("*.toml"))
    assert len(files) >= 5
    for path in files:
        st = load_station(path)
        assert st.instruments and st.channels()
        if st.simulated:
            assert st.simulation is not None
            params = st.simulation.cell_params_path
            assert st.simulation.cell_params is not None or (params and params.is_file())


def test_station_model(fixtures_dir: Path) -> None:
    path = fixtures_dir / "stations" / "ssb_station.toml"
    st = load_station(path)
    assert isinstance(st, Station) and st.path == path
    assert st.cell == Cell(
        name="ASSB pouch A-12",
        chemistry="Li|Li6PS5Cl|NMC811",
        area_cm2=0.785,
        thickness_cm=0.06,
        active_mass_g=0.0125,
        nominal_capacity_ah=0.002,
    )
    assert st.simulation == SimulationSpec(
        cell_params_path=(fixtures_dir / "sim" / "sulfide_full_cell.toml").resolve(),
        cell_params=None,
        time_scale=2000.0,
        seed=4,
    )
    names = [s.name for s in st.instruments]
    assert names == ["smu1", "eis1", "force1", "chamber"]
    smu = st.instrument("smu1")
    assert smu == InstrumentSpec(
        name="smu1",
        driver="keithley2450",
        address="sim",
        roles=("source",),
        channel="cell1",
        timeout_s=2.0,
        options={},
        line=smu.line,
    )
    assert path.read_text().splitlines()[smu.line - 1] == "[[instrument]]"
    # The gauge converts force to pressure over the cell's area unless told otherwise.
    assert st.instrument("force1").options == {"capacity_newton": 2500.0, "area_cm2": 0.785}
    chamber = st.instrument("chamber")
    assert chamber.channel is None and chamber.serves("temperature", "any channel")
    assert st.channels() == ("cell1",)
    assert [s.name for s in st.for_role("temperature", "cell1")] == ["chamber"]
    assert [s.name for s in st.for_role("impedance")] == ["eis1"]
    assert st.raw["simulation"]["seed"] == 4
    assert st.to_dict()["simulated"] is True
    assert st.text == path.read_text() == st.to_dict()["text"]
    assert parse_station(st.text, path=path) == st
    with pytest.raises(KeyError):
        st.instrument("nope")


def test_driver_names_match_the_registry() -> None:
    from cellbench.drivers import registry

    assert set(DRIVER_ROLES) == set(registry.DRIVERS)


def test_frequency_ranges_match_the_drivers() -> None:
    from cellbench.drivers import e4990a
    from cellbench.drivers import hioki_im3590 as im3590
    from cellbench.drivers import palmsens_emstat as emstat

    assert EIS_FREQUENCY_RANGE_HERTZ["e4990a"] == (
        e4990a.MIN_FREQUENCY_HERTZ,
        e4990a.MAX_FREQUENCY_HERTZ,
    )
    assert EIS_FREQUENCY_RANGE_HERTZ["im3590"] == tuple(im3590.FREQUENCY_RANGE_HERTZ)
    assert EIS_FREQUENCY_RANGE_HERTZ["emstat"] == tuple(emstat.EIS_FREQUENCY_RANGE_HERTZ)


GOOD = """\
[cell]
name = "c"
area_cm2 = 1.0
nominal_capacity_ah = 0.001

[[instrument]]
name = "smu"
driver = "keithley2450"
address = "TCPIP::10.0.0.5::5025::SOCKET"
roles = ["source"]
"""


def test_defaults_for_a_one_cell_bench() -> None:
    st = parse_station(GOOD)
    spec = st.instruments[0]
    assert spec.channel == "cell1" and spec.timeout_s == 2.0 and spec.options == {}
    assert st.simulation is None and not st.simulated
    # A driver that can do one thing only does not need roles spelled out.
    st = parse_station(GOOD.replace('roles = ["source"]\n', ""))
    assert st.instruments[0].roles == ("source",)


BAD_STATION = """\
[cell]
name = "c"
area_cm2 = -1
nominal_capacity_ah = "2 mAh"
capacity = 3

[simulation]
time_scale = 0
seed = -1
cell = "no_such_file.toml"

[[instrument]]
name = "smu"
driver = "keithley2450"
address = "sim"
roles = ["source", "impedance"]

[[instrument]]
name = "smu"
driver = "keithley2450"
address = "sim"

[[instrument]]
name = "x"
driver = "keithly2450"
address = "sim"

[[instrument]]
name = "smu2"
driver = "emstat"
address = "sim"
roles = ["sorce"]
timeout_s = 0

[[instrument]]
name = "smu3"
driver = "emstat"
address = "sim"
roles = ["source"]
channel = "cell1"

[[instrument]]
name = "gauge"
driver = "mark10"
address = "/dev/ttyUSB0"
channel = "cell2"
options = { area_cm2 = 1.0 }

[[instrument]]
name = "gauge2"
driver = "mark10"
address = "/dev/ttyUSB0"
channel = "cell2"
colour = "red"
options = 5
"""


def test_every_station_problem_with_its_line() -> None:
    with pytest.raises(StationError) as info:
        parse_station(BAD_STATION, source="bad.toml")
    got = [(p.line, p.key) for p in info.value.problems]
    expected = [
        (3, "cell.area_cm2"),
        (4, "cell.nominal_capacity_ah"),
        (5, "cell.capacity"),
        (8, "simulation.time_scale"),
        (9, "simulation.seed"),
        (10, "simulation.cell"),
        (16, "instrument[0].roles[1]"),
        (19, "instrument[1].name"),  # the name is taken
        (25, "instrument[2].driver"),
        (32, "instrument[3].roles[0]"),
        (33, "instrument[3].timeout_s"),
        (39, "instrument[4].roles"),  # a second source on cell1 (instrument 1 by default)
        (46, "instrument[5].channel"),  # no cell on cell2
        (52, "instrument[6].address"),  # the gauge's port again
        (53, "instrument[6].channel"),
        (54, "instrument[6].colour"),
        (55, "instrument[6].options"),
    ]
    assert got == expected, info.value.problems
    messages = {p.key: p.message for p in info.value.problems}
    assert "did you mean 'keithley2450'" in messages["instrument[2].driver"]
    assert "cannot take role 'impedance'" in messages["instrument[0].roles[1]"]
    assert "did you mean 'source'" in messages["instrument[3].roles[0]"]
    assert "no such cell parameter file" in messages["simulation.cell"]
    assert "number in Ah" in messages["cell.nominal_capacity_ah"]
    assert "exactly one" in messages["instrument[4].roles"]
    assert "also the name of instrument[0]" in messages["instrument[1].name"]
    assert str(info.value).startswith("17 problem(s) in bad.toml:\nbad.toml:3: cell.area_cm2:")


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (
            GOOD.replace('address = "TCPIP::10.0.0.5::5025::SOCKET"', 'address = "sim"'),
            "instrument[0].address",
            "[simulation]",
        ),
        (GOOD.replace('name = "smu"', 'name = "smu 1"'), "instrument[0].name", "letters"),
        (GOOD.replace('driver = "keithley2450"\n', ""), "instrument[0]", "missing 'driver'"),
        (
            GOOD.replace('roles = ["source"]', 'roles = ["source", "source"]'),
            "instrument[0].roles",
            "twice",
        ),
        (GOOD.replace('roles = ["source"]', "roles = []"), "instrument[0].roles", "list"),
        (
            GOOD.replace('roles = ["source"]', 'roles = ["source"]\nchannel = 3'),
            "instrument[0].channel",
            "name",
        ),
        (GOOD.replace("[cell]", "[cel]"), "cel", "did you mean 'cell'"),
        (GOOD.split("[[instrument]]")[0], "", "no instruments"),
        (
            "[[instrument]]\nname='a'\ndriver='espec'\naddress='/dev/ttyUSB0'\n",
            "",
            "missing [cell]",
        ),
        (
            "[cell]\n[[instrument]]\nname='a'\ndriver='espec'\naddress='/dev/ttyUSB0'\n",
            "instrument",
            "no instrument is a source",
        ),
        (
            "[cell]\n[[instrument]]\nname='g'\ndriver='mark10'\naddress='/dev/ttyUSB0'\n",
            "instrument[0]",
            "area",
        ),
        (
            GOOD + "[simulation]\ncell = 'a.toml'\ncell_params = { x = 1 }\n",
            "simulation.cell_params",
            "give cell",
        ),
        (
            GOOD + "\n[[instrument]]\nname='b'\ndriver='keithley2450'\n"
            "address='TCPIP::10.0.0.5::5025::SOCKET'\nchannel='cell2'\n",
            "instrument[1].address",
            "also the address",
        ),
        ("[cell\n", "", "TOML syntax"),
    ],
)
def test_single_station_problems(text: str, key: str, fragment: str) -> None:
    with pytest.raises(StationError) as info:
        parse_station(text, source="s.toml", path=Path("/nonexistent/s.toml"))
    assert any(p.key == key and fragment in p.message for p in info.value.problems), (
        info.value.problems
    )


def test_an_instrument_without_channel_joins_the_only_cell_channel() -> None:
    gauge = "\n[[instrument]]\nname = 'g'\ndriver = 'mark10'\naddress = '/dev/ttyUSB1'\n"
    one = GOOD.replace('roles = ["source"]', 'roles = ["source"]\nchannel = "pellet"') + gauge
    st = parse_station(one)
    assert [s.channel for s in st.instruments] == ["pellet", "pellet"]
    two = one + (
        "\n[[instrument]]\nname = 'smu2'\ndriver = 'keithley2450'\n"
        "address = 'TCPIP::10.0.0.9::5025::SOCKET'\nchannel = 'cell2'\n"
    )
    with pytest.raises(StationError, match=r"several channels \('pellet', 'cell2'\)"):
        parse_station(two)


def test_inline_simulation_parameters() -> None:
    text = GOOD.replace('"TCPIP::10.0.0.5::5025::SOCKET"', '"sim"')
    text += "[simulation]\ntime_scale = 100.0\n[simulation.cell_params]\ncapacity_ah = 0.001\n"
    st = parse_station(text)
    assert st.simulation == SimulationSpec(None, {"capacity_ah": 0.001}, 100.0, 0)
    assert st.simulated


def test_missing_station_file() -> None:
    with pytest.raises(StationError, match="no such station file"):
        load_station("/nonexistent/station.toml")


# -- protocol on station ---------------------------------------------------------------------------


def _station(extra: str = "", cell: str = "area_cm2 = 1.0\nnominal_capacity_ah = 0.001") -> Station:
    return parse_station(
        f"[cell]\n{cell}\n[[instrument]]\nname = 'smu'\ndriver = 'keithley2450'\n"
        f"address = 'TCPIP::10.0.0.5::5025::SOCKET'\n{extra}",
        source="station.toml",
        path=Path("station.toml"),
    )


def test_validate_run_reports_what_the_station_lacks() -> None:
    text = """\
[safety]
voltage_min = "2.5 V"
voltage_max = "4.3 V"
current_max = "5 mA"
temperature_max = "60 degC"
pressure_max = "10 MPa"

[[step]]
type = "temperature"
setpoint = "40 degC"

[[step]]
type = "eis"
start = "100 kHz"
stop = "1 Hz"
amplitude = "10 mV"

[[step]]
type = "cc"
current = "C/2"
until = { voltage_above = "4.2 V" }

[[step]]
type = "ccd"
start = "0.1 mA"
step = "0.1 mA"
max = "1 mA"
half_cycle = "10 min"
"""
    p = parse_protocol(text, source="p.toml", path=Path("p.toml"))
    with pytest.raises(ProtocolError) as info:
        validate_run(p, _station(cell="name = 'no capacity, no area'"))
    got = sorted((pr.file, pr.line, pr.key) for pr in info.value.problems)
    assert got == [
        ("p.toml", 5, "safety.temperature_max"),
        ("p.toml", 6, "safety.pressure_max"),
        ("p.toml", 8, "step 0 (temperature)"),
        ("p.toml", 12, "step 1 (eis)"),
        ("p.toml", 20, "step[2].current"),
        ("p.toml", 23, "step 3 (ccd)"),
    ]
    messages = " ".join(pr.message for pr in info.value.problems)
    assert "nominal_capacity_ah" in messages and "area_cm2" in messages
    assert "station channel 'cell1' has none" in messages


def test_validate_run_frequency_range_and_galvanostatic_eis() -> None:
    text = """\
[[step]]
type = "eis"
start = "1 MHz"
stop = "1 Hz"
amplitude = "10 uA"
"""
    analyzer = "\n[[instrument]]\nname = 'z'\ndriver = 'e4990a'\n"
    analyzer += "address = 'TCPIP::10.0.0.6::5025::SOCKET'\n"
    with pytest.raises(ProtocolError) as info:
        validate_run(parse_protocol(text, source="p.toml"), _station(analyzer))
    messages = [p.message for p in info.value.problems]
    assert any("outside what e4990a 'z' measures" in m for m in messages)
    assert any("galvanostatic" in m for m in messages)
    # A 10 MHz E4990A (option 010) is told apart by its options.
    text = text.replace('"1 MHz"', '"20 MHz"').replace('"1 Hz"', '"100 Hz"').replace("uA", "mV")
    validate_run(parse_protocol(text), _station(analyzer))
    limited = analyzer + "options = { max_frequency_hertz = 10e6 }\n"
    with pytest.raises(ProtocolError, match=r"\(20 Hz-10 MHz\)"):
        validate_run(parse_protocol(text), _station(limited))


def test_validate_run_on_a_matching_station_returns_the_resolved_protocol() -> None:
    text = '[safety]\nvoltage_max = "4.3 V"\n[[step]]\ntype = "cc"\ncurrent = "C/2"\n'
    text += 'until = { voltage_above = "4.2 V" }\n'
    p = parse_protocol(text)
    assert not p.is_resolved
    resolved = validate_run(p, _station())
    assert resolved.steps[0].current_ampere == pytest.approx(5e-4)  # type: ignore[attr-defined]


def test_simulated_cell_parameters_are_checked_with_the_station() -> None:
    text = GOOD.replace('"TCPIP::10.0.0.5::5025::SOCKET"', '"sim"')
    text += "[simulation]\n[simulation.cell_params]\ncapacity_ah = 0.001\nbogus = 3\n"
    with pytest.raises(StationError) as info:
        parse_station(text, source="s.toml")
    (problem,) = info.value.problems
    assert problem.key == "simulation.cell_params" and problem.line == 12
    assert "bogus" in problem.message
