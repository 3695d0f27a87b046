"""Quantities as technicians write them: cellbench.core.units."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbench.core import units
from cellbench.core.errors import CellbenchError
from cellbench.core.units import (
    Quantity,
    UnitError,
    format_quantity,
    parse_capacity,
    parse_current,
    parse_duration,
    parse_fraction,
    parse_frequency,
    parse_pressure,
    parse_quantity,
    parse_resistance,
    parse_temperature,
    parse_temperature_difference,
    parse_voltage,
)


@pytest.mark.parametrize(
    ("text", "value", "dimension"),
    [
        ("0.5 mA", 5e-4, units.CURRENT),
        ("-2 mA", -2e-3, units.CURRENT),
        ("+3A", 3.0, units.CURRENT),
        ("100 µA", 1e-4, units.CURRENT),
        ("100 μA", 1e-4, units.CURRENT),
        ("100 uA", 1e-4, units.CURRENT),
        ("5 nA", 5e-9, units.CURRENT),
        ("\u22123 mA", -3e-3, units.CURRENT),  # Unicode minus, pasted from a document
        ("4.2 V", 4.2, units.VOLTAGE),
        ("10 mV", 0.01, units.VOLTAGE),
        ("1e-3 V", 1e-3, units.VOLTAGE),
        ("2 h", 7200.0, units.TIME),
        ("30 min", 1800.0, units.TIME),
        ("90 s", 90.0, units.TIME),
        ("250 ms", 0.25, units.TIME),
        ("1 day", 86400.0, units.TIME),
        ("1h30min", 5400.0, units.TIME),
        ("1 h 30 min", 5400.0, units.TIME),
        ("2d 3h", 2 * 86400.0 + 3 * 3600.0, units.TIME),
        ("1 min 30 s", 90.0, units.TIME),
        ("1:30:00", 5400.0, units.TIME),
        ("2:30", 150.0, units.TIME),
        ("25 degC", 298.15, units.TEMPERATURE),
        ("25 °C", 298.15, units.TEMPERATURE),
        ("298.15 K", 298.15, units.TEMPERATURE),
        ("-20 degC", 253.15, units.TEMPERATURE),
        ("212 degF", 373.15, units.TEMPERATURE),
        ("0.1 mA/cm2", 1.0, units.CURRENT_DENSITY),
        ("0.1 mA/cm^2", 1.0, units.CURRENT_DENSITY),
        ("0.1 mA/cm²", 1.0, units.CURRENT_DENSITY),
        ("0.1 mA cm-2", 1.0, units.CURRENT_DENSITY),
        ("10 A/m2", 10.0, units.CURRENT_DENSITY),
        ("1 MHz", 1e6, units.FREQUENCY),
        ("100 mHz", 0.1, units.FREQUENCY),
        ("5 MPa", 5e6, units.PRESSURE),
        ("500 kPa", 5e5, units.PRESSURE),
        ("10 bar", 1e6, units.PRESSURE),
        ("2.5 mAh", 9.0, units.CAPACITY),
        ("1 Ah", 3600.0, units.CAPACITY),
        ("10 ohm", 10.0, units.RESISTANCE),
        ("1 kΩ", 1000.0, units.RESISTANCE),
        ("1 k\u2126", 1000.0, units.RESISTANCE),  # the ohm sign, not the Greek letter
        ("0.8", 0.8, units.DIMENSIONLESS),
        ("80 %", 0.8, units.DIMENSIONLESS),
        ("80%", 0.8, units.DIMENSIONLESS),
        ("C/10", 0.1, units.C_RATE),
        ("2C", 2.0, units.C_RATE),
        ("-C/2", -0.5, units.C_RATE),
        ("0.5 C", 0.5, units.C_RATE),
        ("C", 1.0, units.C_RATE),
        ("C / 2.5", 0.4, units.C_RATE),
    ],
)
def test_parse_quantity(text: str, value: float, dimension: str) -> None:
    q = parse_quantity(text)
    assert q.dimension == dimension
    assert q.value_si == pytest.approx(value, rel=1e-12)


def test_si_prefixes_are_exact_for_round_numbers() -> None:
    # "100 µA" must be 1e-4 exactly, not 9.999999999999999e-05 (shows up in run.json).
    assert parse_quantity("100 µA").value_si == 1e-4
    assert parse_quantity("3 mHz").value_si == 0.003


def test_kind_parsers_return_storage_units() -> None:
    assert parse_current("0.5 mA") == pytest.approx(5e-4)
    assert parse_current("C/10", nominal_capacity_ah=0.002) == pytest.approx(2e-4)
    assert parse_current("-2C", nominal_capacity_ah=0.002) == pytest.approx(-4e-3)
    assert parse_current("0.1 mA/cm2", area_cm2=2.0) == pytest.approx(2e-4)
    assert parse_voltage("4.2 V") == 4.2
    assert parse_duration("1h30min") == 5400.0
    assert parse_duration("1h30m") == 5400.0  # "m" is minutes where only a duration makes sense
    assert parse_duration("30 m") == 1800.0
    assert parse_temperature("25 degC") == pytest.approx(25.0)
    assert parse_temperature("298.15 K") == pytest.approx(25.0)
    assert parse_temperature("25 C") == pytest.approx(25.0)  # a temperature, not a C-rate
    assert parse_temperature_difference("0.5 K") == 0.5
    assert parse_temperature_difference("0.5 degC") == 0.5  # a difference: no 273.15 offset
    assert parse_frequency("1 MHz") == 1e6
    assert parse_capacity("2.5 mAh") == pytest.approx(2.5e-3)
    assert parse_pressure("5 MPa") == pytest.approx(5.0)
    assert parse_pressure("100 psi") == pytest.approx(0.6894757)
    assert parse_resistance("1 kΩ") == 1000.0
    assert parse_fraction("80 %") == pytest.approx(0.8)
    assert parse_fraction(0.8) == 0.8


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: parse_voltage("4.2"), "without a unit"),
        (lambda: parse_voltage(4.2), "without a unit"),
        (lambda: parse_voltage("4.2 A"), "a current"),
        (lambda: parse_voltage("4.2 furlongs"), "unknown unit 'furlongs'"),
        (lambda: parse_voltage(""), "empty"),
        (lambda: parse_voltage("volts"), "number followed by a unit"),
        (lambda: parse_current("C/10"), "nominal capacity"),
        (lambda: parse_current("0.1 mA/cm2"), "area"),
        (lambda: parse_current("4 V"), "expected a current"),
        (lambda: parse_current("C/0", nominal_capacity_ah=1.0), "divides by zero"),
        (lambda: parse_duration("-5 min"), "negative"),
        (lambda: parse_duration("1h30"), "unknown unit"),
        (lambda: parse_frequency("0 Hz"), "positive"),
        (lambda: parse_temperature("-300 degC"), "absolute zero"),
        (lambda: parse_temperature("25"), "without a unit"),
        (lambda: parse_temperature_difference("25 V"), "temperature difference"),
        (lambda: parse_fraction("5 mA"), "a current"),
        (lambda: parse_quantity(True), "quantity"),
        (lambda: parse_quantity(float("nan")), "finite"),
        (lambda: parse_quantity("inf V"), "number followed by a unit"),
    ],
)
def test_errors_say_what_was_expected(call, fragment: str) -> None:
    with pytest.raises(UnitError) as info:
        call()
    assert fragment in str(info.value)
    assert isinstance(info.value, CellbenchError)


def test_expected_kind_is_named() -> None:
    with pytest.raises(UnitError, match=r"expected a voltage such as '4\.2 V'"):
        parse_voltage("3 h")
    with pytest.raises(UnitError, match=r"expected a current such as .*C/10"):
        parse_current("3 h")


# -- round trips -----------------------------------------------------------------------------------

_PREFIX_EXPONENT = {"p": -12, "n": -9, "u": -6, "µ": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9}
_BASE = {"A": units.CURRENT, "V": units.VOLTAGE, "Hz": units.FREQUENCY, "Pa": units.PRESSURE}

_mantissa = st.decimals(
    min_value=-999, max_value=999, places=3, allow_nan=False, allow_infinity=False
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    m=_mantissa,
    prefix=st.sampled_from(sorted(_PREFIX_EXPONENT)),
    base=st.sampled_from(sorted(_BASE)),
)
def test_prefixed_units_round_trip(m, prefix: str, base: str) -> None:
    text = f"{m} {prefix}{base}"
    q = parse_quantity(text)
    assert q.dimension == _BASE[base]
    expected = float(m) * 10.0 ** _PREFIX_EXPONENT[prefix]
    assert q.value_si == pytest.approx(expected, rel=1e-12, abs=1e-30)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=st.floats(min_value=1e-11, max_value=1e8, allow_nan=False),
    sign=st.sampled_from([1.0, -1.0]),
    dimension=st.sampled_from(
        [units.CURRENT, units.VOLTAGE, units.FREQUENCY, units.RESISTANCE, units.CAPACITY]
    ),
)
def test_format_then_parse_round_trips(value: float, sign: float, dimension: str) -> None:
    if dimension == units.FREQUENCY or dimension == units.RESISTANCE:
        sign = 1.0
    v = sign * value
    text = format_quantity(v, dimension, digits=6)
    q = parse_quantity(text)
    assert q.dimension == dimension
    assert q.value_si == pytest.approx(v, rel=1e-5)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hours=st.integers(0, 48), minutes=st.integers(0, 59), seconds=st.integers(0, 59))
def test_compound_durations_round_trip(hours: int, minutes: int, seconds: int) -> None:
    parts = [(hours, "h"), (minutes, "min"), (seconds, "s")]
    text = "".join(f"{n}{u}" for n, u in parts)
    total = hours * 3600 + minutes * 60 + seconds
    assert parse_duration(text) == total
    assert parse_duration(" ".join(f"{n} {u}" for n, u in parts)) == total
    assert parse_duration(f"{hours}:{minutes:02d}:{seconds:02d}") == total
    assert parse_duration(format_quantity(float(total), units.TIME, digits=9)) == pytest.approx(
        total, rel=1e-6, abs=1e-9
    )


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    num=st.integers(1, 20),
    den=st.integers(1, 50),
    capacity=st.floats(min_value=1e-5, max_value=10.0),
    negative=st.booleans(),
)
def test_c_rates_scale_with_capacity(num: int, den: int, capacity: float, negative: bool) -> None:
    sign = "-" if negative else ""
    text = f"{sign}{num}C/{den}" if num != 1 else f"{sign}C/{den}"
    amp = parse_current(text, nominal_capacity_ah=capacity)
    assert amp == pytest.approx((-1 if negative else 1) * num / den * capacity, rel=1e-12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(celsius=st.floats(min_value=-200.0, max_value=1000.0, allow_nan=False))
def test_temperatures_round_trip(celsius: float) -> None:
    assert parse_temperature(f"{celsius!r} degC") == pytest.approx(celsius, abs=1e-9)
    assert parse_temperature(f"{celsius + 273.15!r} K") == pytest.approx(celsius, abs=1e-9)
    text = format_quantity(celsius + 273.15, units.TEMPERATURE, digits=12)
    assert parse_temperature(text) == pytest.approx(celsius, abs=1e-6)


def test_quantity_is_a_value() -> None:
    assert parse_quantity("1 mA") == Quantity(1e-3, units.CURRENT)
    assert math.isclose(parse_quantity("1 kHz").value_si, 1000.0)
