"""Protocol files: cellbench.daq.protocol."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbench.core.errors import CellbenchError
from cellbench.core.schema import Cell
from cellbench.daq.protocol import (
    CC,
    CCCV,
    CCD,
    CV,
    EIS,
    GITT,
    Ends,
    Limits,
    Loop,
    LoopUntil,
    Ocv,
    Problem,
    Protocol,
    ProtocolError,
    Pulse,
    Rest,
    Temperature,
    load_protocol,
    parse_protocol,
)

CELL = Cell(name="coin", nominal_capacity_ah=0.002, area_cm2=0.5)

EVERY_KIND = """\
name = "every kind"
sample_interval = "2 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.3 V"
current_max = "10 mA"
temperature_max = "80 degC"
pressure_max = "10 MPa"

[[step]]
type = "rest"
duration = "10 min"
record_every = "10 s"

[[step]]
type = "ocv"
duration = "1 h"

[[step]]
type = "cc"
name = "charge"
current = "C/10"
until = { voltage_above = "4.2 V", time = "12 h", capacity = "50 %" }
limits = { voltage_max = "4.25 V", temperature_max = "40 degC" }
record_dv = "5 mV"

[[step]]
type = "cv"
voltage = "4.2 V"
current_limit = "2 mA"
until = { current_below = "C/20", time = "2 h" }

[[step]]
type = "cccv"
current = "-1 mA"
voltage = "3.0 V"
until = { current_below = "50 uA" }

[[step]]
type = "eis"
start = "100 kHz"
stop = "10 mHz"
points_per_decade = 8
amplitude = "10 uA"
dc_bias = "3.7 V"

[[step]]
type = "hppc"
current = "-1C"
charge_current = "0.75C"
pulse = "10 s"
rest = "40 s"
count = 3
until = { voltage_below = "2.8 V" }

[[step]]
type = "pulse"
current = "1 mA"
pulse = "1 s"

[[step]]
type = "gitt"
current = "C/20"
pulse = "10 min"
rest = "1 h"
until = { voltage_above = "4.2 V" }

[[step]]
type = "ccd"
start = "0.1 mA/cm2"
step = "0.1 mA/cm2"
max = "1 mA/cm2"
half_cycle = "30 min"
cycles_per_step = 2
short = { voltage_fraction = 0.3, voltage_below = "2 mV" }

[[step]]
type = "temperature"
setpoint = "60 degC"
tolerance = "0.5 K"
stable_for = "10 min"
soak = "20 min"
timeout = "3 h"

[[step]]
type = "loop"
until = { discharge_capacity_below = "80 %", time = "1000 h" }
max_repeat = 200
steps = [
  { type = "eis", every = 5, start = "1 kHz", stop = "1 Hz", amplitude = "5 mV", dc_bias = "ocv" },
  { type = "loop", repeat = 2, steps = [ { type = "cc", current = "-C/2", until = { \
voltage_below = "3 V" } } ] },
  { type = "cc", current = "C/2", voltage_limit = "4.25 V", until = { voltage_above = "4.2 V" } },
]
"""


def test_every_step_kind_is_built_in_si_units() -> None:
    p = parse_protocol(EVERY_KIND, source="every.toml", cell=CELL)
    assert p.name == "every kind"
    assert p.sample_interval_second == 2.0
    assert p.safety == Limits(2.5, 4.3, 0.01, 80.0, 10.0)
    s = p.steps
    assert s[0] == Rest(
        index=0, name="rest 10 min", line=11, duration_second=600.0, record_interval_second=10.0
    )
    assert s[1] == Ocv(index=1, name="ocv 1 h", line=16, duration_second=3600.0)
    cc = s[2]
    assert isinstance(cc, CC)
    assert (cc.index, cc.kind, cc.name, cc.line) == (2, "cc", "charge", 20)
    assert cc.current_ampere == pytest.approx(2e-4)
    assert cc.voltage_limit_volt == 4.3  # compliance from the safety window
    assert cc.ends == Ends(voltage_above_volt=4.2, time_second=43200.0, capacity_ampere_hour=0.001)
    assert cc.limits == Limits(voltage_max_volt=4.25, temperature_max_celsius=40.0)
    assert cc.record_dv_volt == pytest.approx(0.005)
    cv = s[3]
    assert isinstance(cv, CV)
    assert (cv.voltage_volt, cv.current_limit_ampere) == (4.2, pytest.approx(2e-3))
    assert cv.ends.current_below_ampere == pytest.approx(1e-4)
    assert cv.ends.time_second == 7200.0
    cccv = s[4]
    assert isinstance(cccv, CCCV)
    assert cccv.current_ampere == pytest.approx(-1e-3)
    assert cccv.end_current_ampere == pytest.approx(5e-5)
    assert cccv.max_duration_second is None
    eis = s[5]
    assert isinstance(eis, EIS)
    assert (eis.start_hertz, eis.stop_hertz, eis.points_per_decade) == (1e5, 0.01, 8)
    assert (eis.amplitude, eis.amplitude_unit, eis.dc_bias_volt) == (1e-5, "A", 3.7)
    assert eis.every_cycles is None
    hppc = s[6]
    assert isinstance(hppc, Pulse) and hppc.kind == "hppc"
    assert hppc.current_ampere == pytest.approx(-2e-3)
    assert hppc.charge_current_ampere == pytest.approx(1.5e-3)
    assert (hppc.pulse_second, hppc.rest_second, hppc.count) == (10.0, 40.0, 3)
    assert hppc.ends.voltage_below_volt == 2.8
    pulse = s[7]
    assert isinstance(pulse, Pulse) and pulse.kind == "pulse"
    assert (pulse.count, pulse.rest_second, pulse.charge_current_ampere) == (1, 0.0, None)
    gitt = s[8]
    assert isinstance(gitt, GITT)
    assert gitt.current_ampere == pytest.approx(1e-4)
    assert (gitt.pulse_second, gitt.rest_second, gitt.count) == (600.0, 3600.0, None)
    ccd = s[9]
    assert isinstance(ccd, CCD)
    assert ccd.start_ampere == pytest.approx(5e-5)  # 0.1 mA/cm2 x 0.5 cm2
    assert ccd.max_ampere == pytest.approx(5e-4)
    assert (ccd.half_cycle_second, ccd.cycles_per_step, ccd.area_cm2) == (1800.0, 2, 0.5)
    assert (ccd.short_voltage_fraction, ccd.short_min_voltage_volt) == (0.3, pytest.approx(2e-3))
    assert len(ccd.levels_ampere()) == 10
    assert ccd.levels_ampere()[-1] == pytest.approx(5e-4)
    temp = s[10]
    assert temp == Temperature(
        index=10,
        name=temp.name,
        line=temp.line,
        setpoint_celsius=pytest.approx(60.0),
        tolerance_celsius=0.5,
        stable_second=600.0,
        timeout_second=10800.0,
        soak_second=1200.0,
    )
    loop = s[11]
    assert isinstance(loop, Loop)
    assert loop.repeat is None and loop.max_repeat == 200
    assert loop.until == LoopUntil(discharge_capacity_below_fraction=0.8, time_second=3.6e6)
    inner_eis, inner_loop, inner_cc = loop.steps
    assert isinstance(inner_eis, EIS) and inner_eis.every_cycles == 5
    assert inner_eis.dc_bias_volt is None and inner_eis.amplitude_unit == "V"
    assert isinstance(inner_loop, Loop) and inner_loop.repeat == inner_loop.max_repeat == 2
    assert isinstance(inner_loop.steps[0], CC)
    assert inner_loop.steps[0].voltage_limit_volt == 2.5  # discharging: the window's floor
    assert isinstance(inner_cc, CC) and inner_cc.voltage_limit_volt == 4.25
    # Depth-first, loops before their bodies, 0-based and unique.
    walked = [(step.index, depth) for step, depth in p.walk()]
    assert walked == [(i, 0) for i in range(12)] + [(12, 1), (13, 1), (14, 2), (15, 1)]
    assert p.step_count == 16
    text_lines = EVERY_KIND.splitlines()
    assert '"-C/2"' in text_lines[p.step(14).line - 1]  # a step inside a nested inline list
    assert 'type = "loop", repeat = 2' in text_lines[p.step(13).line - 1]
    assert '"4.25 V"' in text_lines[p.step(15).line - 1]
    assert p.kinds() >= {"rest", "ocv", "cc", "cv", "cccv", "eis", "hppc", "pulse", "gitt"}


def test_steps_are_frozen() -> None:
    p = parse_protocol(EVERY_KIND, cell=CELL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.steps[0].duration_second = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.safety.voltage_max_volt = 9.0  # type: ignore[misc]


def test_without_a_cell_c_rates_stay_unresolved_until_given_one() -> None:
    p = parse_protocol(EVERY_KIND, source="every.toml")
    assert not p.is_resolved
    needs = {(u.key, u.text, u.needs) for u in p.unresolved}
    assert ("step[2].current", "C/10", "nominal_capacity_ah") in needs
    assert ("step[2].until.capacity", "50 %", "nominal_capacity_ah") in needs
    assert ("step[9].start", "0.1 mA/cm2", "area_cm2") in needs
    assert {u.step_index for u in p.unresolved} >= {2, 3, 6, 8, 9, 14, 15}
    cc = p.steps[2]
    assert isinstance(cc, CC) and math.isnan(cc.current_ampere)
    assert cc.line == 20 and next(u for u in p.unresolved if u.step_index == 2).line == 23
    resolved = p.with_cell(CELL)
    assert resolved.is_resolved
    assert resolved.steps[2].current_ampere == pytest.approx(2e-4)  # type: ignore[attr-defined]


def test_a_cell_without_the_needed_property_is_an_error() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(EVERY_KIND, source="every.toml", cell=Cell(area_cm2=1.0))
    keys = {p.key for p in info.value.problems}
    assert "step[2].current" in keys
    assert all("nominal_capacity_ah" in p.message for p in info.value.problems)
    with pytest.raises(ProtocolError, match="area_cm2"):
        parse_protocol(EVERY_KIND, cell=Cell(nominal_capacity_ah=1e-3))


# -- the example fixtures --------------------------------------------------------------------------

EXAMPLES = [
    "formation_cycling",
    "eis_vs_temperature",
    "ccd_symmetric",
    "interface_tracking",
    "demo",
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_protocols_load(fixtures_dir: Path, name: str) -> None:
    path = fixtures_dir / "protocols" / f"{name}.toml"
    p = load_protocol(path, cell=CELL)
    assert p.path == path and p.text == path.read_text()
    assert p.is_resolved
    indices = [s.index for s, _ in p.walk()]
    assert indices == list(range(len(indices)))
    lines = path.read_text().splitlines()
    for step, _ in p.walk():
        assert step.line > 0
        assert ("[[step" in lines[step.line - 1]) or ("type" in lines[step.line - 1])
    d = p.to_dict()
    assert d["name"] == p.name and d["text"] == p.text and d["step_count"] == len(indices)


def test_demo_protocol_shape(fixtures_dir: Path) -> None:
    p = load_protocol(fixtures_dir / "protocols" / "demo.toml", cell=CELL)
    temps = [s for s in p.steps if isinstance(s, Temperature)]
    assert len({t.setpoint_celsius for t in temps}) == 3
    loops = [s for s in p.steps if isinstance(s, Loop)]
    assert len(loops) == 1 and loops[0].repeat == 20
    eis = [s for s in loops[0].steps if isinstance(s, EIS)]
    assert eis and eis[0].every_cycles == 5


# -- malformed protocols: every problem, with its line and key -------------------------------------

BAD = {
    "typos": [
        (3, "sample_intervall", "did you mean 'sample_interval'"),
        (10, "step[0]", "missing 'duration'"),
        (12, "step[0].duraton", "did you mean 'duration'"),
        (15, "step[1].type", "unknown step type 'cc_charge'"),
        (21, "step[2].until.voltage_above", "expected a voltage"),
        (23, "step[3]", "needs an end"),
        (30, "step[4].stop", "without a unit"),
        (32, "step[4].points_per_decade", "whole number"),
    ],
    "syntax": [(6, "", "TOML syntax")],
    "multiline_inline": [(8, "", "must be on one line")],
    "safety": [
        (6, "safety.voltage_max", "must be above voltage_min"),
        (12, "step[0].current", "exceeds the safety current_max"),
        (18, "step[1].until.voltage_below", "charging step"),
        (22, "step[2].setpoint", "temperature_max"),
    ],
    "loops": [
        (11, "step[0].every", "inside a loop"),
        (16, "step[1]", "needs max_repeat"),
        (21, "step[1].steps[1].until.time", "negative"),
        (26, "step[2].repeat", "at least 1"),
        (27, "step[2].steps", "non-empty"),
        (40, "step[3].steps[1].steps[0]", "missing 'duration'"),
    ],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_protocols_report_every_problem(fixtures_dir: Path, name: str) -> None:
    path = fixtures_dir / "protocols" / "bad" / f"{name}.toml"
    with pytest.raises(ProtocolError) as info:
        load_protocol(path, cell=CELL)
    got = [(p.line, p.key, p.message) for p in info.value.problems]
    assert [(line, key) for line, key, _ in got] == [(line, key) for line, key, _ in BAD[name]]
    for (_, _, message), (_, _, fragment) in zip(got, BAD[name], strict=True):
        assert fragment in message
    assert all(p.file == str(path) for p in info.value.problems)
    text = str(info.value)
    assert f"{path}:{BAD[name][0][0]}: " in text
    assert isinstance(info.value, CellbenchError)


def test_missing_file() -> None:
    with pytest.raises(ProtocolError, match="no such protocol file"):
        load_protocol(Path("/nonexistent/protocol.toml"))


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        (
            '[[step]]\ntype = "rest"\nduration = "1 min"\nrecord_every = "0.5 s"',
            "step[0].record_every",
            "shorter than the sample interval",
        ),
        (
            '[[step]]\ntype = "cc"\ncurrent = "1 mA"\nuntil = { time = "1 h" }',
            "step[0]",
            "voltage_limit",
        ),
        (
            '[[step]]\ntype = "cc"\ncurrent = "0 mA"\n'
            'until = { time = "1 h" }\nvoltage_limit = "4 V"',
            "step[0].current",
            "zero",
        ),
        (
            '[[step]]\ntype = "cc"\ncurrent = "-1 mA"\nvoltage_limit = "3 V"\n'
            'until = { voltage_above = "4 V" }',
            "step[0].until.voltage_above",
            "discharging",
        ),
        (
            '[[step]]\ntype = "cc"\ncurrent = "1 mA"\nvoltage_limit = "4 V"\nuntil = {}',
            "step[0].until",
            "at least one",
        ),
        (
            '[[step]]\ntype = "cc"\ncurrent = "1 mA"\nvoltage_limit = "4 V"\n'
            'until = { current_below = "1 uA" }',
            "step[0].until.current_below",
            "unknown key",
        ),
        (
            '[[step]]\ntype = "cv"\nvoltage = "4 V"\nuntil = { time = "1 h" }',
            "step[0]",
            "current_limit",
        ),
        (
            '[[step]]\ntype = "cccv"\ncurrent = "1 mA"\nvoltage = "4 V"\ncurrent_limit = "1 mA"\n'
            'until = { current_below = "2 mA" }',
            "step[0].until.current_below",
            "not below",
        ),
        (
            '[[step]]\ntype = "eis"\nstart = "1 kHz"\nstop = "1 kHz"\namplitude = "5 mV"',
            "step[0].stop",
            "differ",
        ),
        (
            '[[step]]\ntype = "eis"\nstart = "1 kHz"\nstop = "1 Hz"\namplitude = "5 ohm"',
            "step[0].amplitude",
            "voltage",
        ),
        (
            '[[step]]\ntype = "eis"\nstart = "1 kHz"\nstop = "1 Hz"\namplitude = "5 mV"\n'
            "points_per_decade = 1000",
            "step[0].points_per_decade",
            "at most 100",
        ),
        (
            '[[step]]\ntype = "gitt"\ncurrent = "1 mA"\npulse = "1 min"\nrest = "1 h"',
            "step[0]",
            "needs an end",
        ),
        (
            '[[step]]\ntype = "pulse"\ncurrent = "1 mA"\ncharge_current = "1 mA"\npulse = "1 s"',
            "step[0].charge_current",
            "opposite sign",
        ),
        (
            '[[step]]\ntype = "ccd"\nstart = "1 mA"\nstep = "1 mA"\nmax = "0.5 mA"\n'
            'half_cycle = "1 h"',
            "step[0].max",
            "below start",
        ),
        (
            '[[step]]\ntype = "ccd"\nstart = "1 mA"\nstep = "1 mA"\nmax = "5 mA"\n'
            'half_cycle = "1 h"\n'
            "short = { voltage_fraction = 1.5 }",
            "step[0].short.voltage_fraction",
            "fraction",
        ),
        (
            '[[step]]\ntype = "temperature"\nsetpoint = "25 degC"\nstable_for = "2 h"\n'
            'timeout = "1 h"',
            "step[0].timeout",
            "longer than stable_for",
        ),
        ('[[step]]\ntype = "temperature"\nsetpoint = "25"', "step[0].setpoint", "without a unit"),
        (
            '[[step]]\ntype = "loop"\nsteps = [ { type = "rest", duration = "1 s" } ]',
            "step[0]",
            "repeat",
        ),
        (
            '[[step]]\ntype = "loop"\nrepeat = 2\nmax_repeat = 3\n'
            'steps = [ { type = "rest", duration = "1 s" } ]',
            "step[0].max_repeat",
            "not both",
        ),
        (
            '[[step]]\ntype = "loop"\nmax_repeat = 3\n'
            'until = { discharge_capacity_below = "80 %" }\n'
            'steps = [ { type = "rest", duration = "1 s" } ]',
            "step[0].until.discharge_capacity_below",
            "no discharging step",
        ),
        (
            '[[step]]\ntype = "loop"\nmax_repeat = 3\n'
            'until = { discharge_capacity_below = "2 V" }\n'
            'steps = [ { type = "rest", duration = "1 s" } ]',
            "step[0].until.discharge_capacity_below",
            "fraction",
        ),
        ('[[step]]\nname = 3\ntype = "rest"\nduration = "1 s"', "step[0].name", "text"),
        ('[[step]]\nduration = "1 s"', "step[0]", "missing 'type'"),
        (
            '[[step]]\ntype = "rest"\nduration = "1 s"\nlimits = { voltage_maxx = "4 V" }',
            "step[0].limits.voltage_maxx",
            "did you mean 'voltage_max'",
        ),
        ('steps = [ { type = "rest", duration = "1 s" } ]', "steps", "[[step]]"),
        (
            'sample_interval = "0 s"\n[[step]]\ntype = "rest"\nduration = "1 s"',
            "sample_interval",
            "positive",
        ),
        ('name = "empty"', "", "no steps"),
    ],
)
def test_single_problems(body: str, key: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(body, source="x.toml", cell=CELL)
    matching = [p for p in info.value.problems if p.key == key and fragment in p.message]
    assert matching, info.value.problems


def test_problems_are_sorted_and_formatted() -> None:
    assert str(Problem("a.toml", 3, "step[0]", "bad")) == "a.toml:3: step[0]: bad"
    assert str(Problem("a.toml", 0, "", "bad")) == "a.toml: bad"
    with pytest.raises(ProtocolError) as info:
        parse_protocol('[[step]]\ntype = "nope"\n[[step]]\ntype = "rest"\n', source="x.toml")
    lines = [p.line for p in info.value.problems]
    assert lines == sorted(lines) and lines[0] == 2


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my_test.toml"
    path.write_text('[[step]]\ntype = "rest"\nduration = "1 s"\n')
    p = load_protocol(path)
    assert isinstance(p, Protocol) and p.name == "my_test"
    assert p.safety.is_empty() and p.sample_interval_second == 1.0


def test_limits_merge_takes_the_stricter() -> None:
    run = Limits(voltage_min_volt=2.5, voltage_max_volt=4.3, current_max_ampere=0.01)
    step = Limits(voltage_max_volt=4.25, voltage_min_volt=2.0, temperature_max_celsius=40.0)
    assert run.merged(step) == Limits(2.5, 4.25, 0.01, 40.0, None)
    assert run.merged(None) is run


# -- generated protocols: every step's line is where it was written --------------------------------

_LEAVES = [
    'type = "rest", duration = "1 min"',
    'type = "eis", start = "10 kHz", stop = "1 Hz", amplitude = "5 mV"',
    'type = "cc", current = "-1 mA", voltage_limit = "2 V", until = { voltage_below = "3 V" }',
]

_trees = st.recursive(
    st.sampled_from(range(len(_LEAVES))),
    lambda children: st.tuples(st.booleans(), st.lists(children, min_size=1, max_size=3)),
    max_leaves=12,
)


def _inline(node) -> str:
    if isinstance(node, int):
        return "{ " + _LEAVES[node] + " }"
    _, children = node
    return '{ type = "loop", repeat = 2, steps = [ ' + ", ".join(map(_inline, children)) + " ] }"


def _emit(node, header: str, out: list[str], lines: list[int], pad: int) -> None:
    out.extend([""] * pad)
    out.append(f"[[{header}]]")
    lines.append(len(out))
    if isinstance(node, int):
        out.extend(part.strip() for part in _split_keys(_LEAVES[node]))
        return
    as_tables, children = node
    out += ['type = "loop"', "repeat = 2"]
    if as_tables:
        for child in children:
            _emit(child, header + ".steps", out, lines, pad)
        return
    out.append("steps = [  # inline")
    for child in children:
        out.append("  " + _inline(child) + ",")
        lines.extend([len(out)] * _count(child))
    out.append("]")


def _split_keys(leaf: str) -> list[str]:
    """'a = 1, b = { c = 2 }' -> ['a = 1', 'b = { c = 2 }'] (commas inside braces kept)."""
    parts, depth, cur = [], 0, ""
    for ch in leaf:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _count(node) -> int:
    return 1 if isinstance(node, int) else 1 + sum(_count(c) for c in node[1])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(steps=st.lists(_trees, min_size=1, max_size=4), pad=st.integers(0, 2))
def test_generated_protocols_number_and_locate_steps(steps, pad: int) -> None:
    out = ['name = "generated"', "[safety]", 'voltage_min = "2 V"', 'voltage_max = "4 V"']
    lines: list[int] = []
    for node in steps:
        _emit(node, "step", out, lines, pad)
    text = "\n".join(out) + "\n"
    p = parse_protocol(text, source="gen.toml")
    walked = list(p.walk())
    assert [s.index for s, _ in walked] == list(range(sum(map(_count, steps))))
    assert [s.line for s, _ in walked] == lines, text


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("step = 5", "step"),
        ("step = [1, 2]", "step"),
        ('safety = 3\n[[step]]\ntype="rest"\nduration="1 s"', "safety"),
        ("[[step]]\ntype = 3", "step[0].type"),
        ('[[step]]\ntype="cc"\ncurrent="1 mA"\nuntil = 3\nvoltage_limit="4 V"', "step[0].until"),
        ('[[step]]\ntype="cv"\nvoltage="4 V"\ncurrent_limit="1 mA"\nuntil = 3', "step[0].until"),
        ('[[step]]\ntype="cccv"\ncurrent="1 mA"\nvoltage="4 V"\nuntil=3', "step[0].until"),
        ('[[step]]\ntype="rest"\nduration="1 s"\nlimits = "x"', "step[0].limits"),
        ('[[step]]\ntype="loop"\nrepeat=2\nsteps = "x"', "step[0].steps"),
        ('[[step]]\ntype="loop"\nrepeat=2\nsteps = [1]', "step[0].steps[0]"),
        (
            '[[step]]\ntype="loop"\nrepeat=true\nsteps=[{type="rest",duration="1 s"}]',
            "step[0].repeat",
        ),
        (
            '[[step]]\ntype="loop"\nuntil=5\nmax_repeat=2\nsteps=[{type="rest",duration="1 s"}]',
            "step[0].until",
        ),
        ('[[step]]\ntype="eis"\nstart="1 kHz"\nstop="1 Hz"\namplitude=[1]', "step[0].amplitude"),
        (
            '[[step]]\ntype="eis"\nstart="1 kHz"\nstop="1 Hz"\namplitude="-5 mV"',
            "step[0].amplitude",
        ),
        (
            '[[step]]\ntype="eis"\nstart="1 kHz"\nstop="1 Hz"\namplitude="5 mV"\ndc_bias="x"',
            "step[0].dc_bias",
        ),
        (
            '[[step]]\ntype="ccd"\nstart="1 mA"\nstep="1 mA"\n'
            'max="2 mA"\nhalf_cycle="1 h"\nshort=5',
            "step[0].short",
        ),
        ('[[step]]\ntype="temperature"\nsetpoint={a=1}', "step[0].setpoint"),
        (
            '[[step]]\ntype="gitt"\ncurrent="1 mA"\npulse="1 s"\n'
            'rest="1 s"\nuntil={capacity="-1 mAh"}',
            "step[0].until.capacity",
        ),
        ('[[step]]\ntype="gitt"\ncurrent="1 mA"\npulse="1 s"\nrest="1 s"\nuntil={}', "step[0]"),
        ('[[step]]\ntype="rest"\nduration="1 s"\nrecord_dv = "-1 mV"', "step[0].record_dv"),
    ],
)
def test_wrong_types_give_one_problem_each(body: str, key: str) -> None:
    """Values of the wrong TOML type are reported once, on their key, without follow-on noise."""
    with pytest.raises(ProtocolError) as info:
        parse_protocol(body, source="x.toml", cell=CELL)
    assert [p.key for p in info.value.problems] == [key], info.value.problems


_MUTATIONS = ['"1 mA"', '"C/2"', "5", "-1", "true", '"x"', "[1, 2]", "{ a = 1 }", '"4.2 V"']
_MUTATIONS += ['"10 min"', '"0 s"', '"80 %"', '""', '"1 mA/cm2"', "0", "[]", "{}", '"1e400 V"']


@pytest.mark.parametrize("seed", range(4))
def test_mutated_fixtures_fail_cleanly_with_lines(fixtures_dir: Path, seed: int) -> None:
    """Random values in the example protocols: a ProtocolError (never a crash) whose every
    problem has a line, or a protocol that loads."""
    rng = random.Random(seed)
    files = sorted((fixtures_dir / "protocols").glob("*.toml"))
    for _ in range(75):
        lines = rng.choice(files).read_text().splitlines()
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(lines))
            line = lines[k].lstrip()
            if "=" in line and not line.startswith(("#", "{")):
                lines[k] = lines[k].split("=", 1)[0] + "= " + rng.choice(_MUTATIONS)
        try:
            parse_protocol("\n".join(lines) + "\n", source="m.toml", cell=CELL)
        except ProtocolError as exc:
            assert exc.problems
            assert all(p.line > 0 for p in exc.problems), exc.problems
