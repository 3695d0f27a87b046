"""Quantities with units, written the way technicians write them in protocols and stations.

``"0.5 mA"``, ``"-2 mA"``, ``"C/10"``, ``"2C"``, ``"4.2 V"``, ``"1h30min"``, ``"25 degC"``,
``"298.15 K"``, ``"0.1 mA/cm2"``, ``"1 MHz"``, ``"5 MPa"``, ``"80 %"``.

:func:`parse_quantity` turns text into a :class:`Quantity` holding the value in SI base units
(A, V, s, K, Hz, C, Pa, Ω, A/m², dimensionless) and its dimension. The ``parse_<kind>`` functions
check the dimension and return the value in the unit cellbench stores that kind in (A, V, s, °C,
Hz, Ah, MPa, fraction), resolving C-rates from a nominal capacity and current densities from an
electrode area. Every failure is a :class:`UnitError` that says what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cellbench.core.errors import CellbenchError

__all__ = [
    "CAPACITY",
    "CURRENT",
    "CURRENT_DENSITY",
    "C_RATE",
    "DIMENSIONLESS",
    "FREQUENCY",
    "PRESSURE",
    "RESISTANCE",
    "TEMPERATURE",
    "TIME",
    "VOLTAGE",
    "Quantity",
    "UnitError",
    "format_quantity",
    "parse_capacity",
    "parse_current",
    "parse_duration",
    "parse_fraction",
    "parse_frequency",
    "parse_pressure",
    "parse_quantity",
    "parse_resistance",
    "parse_temperature",
    "parse_temperature_difference",
    "parse_voltage",
]

# Dimensions (the names used in Quantity.dimension).
CURRENT = "current"  # A
VOLTAGE = "voltage"  # V
TIME = "time"  # s
TEMPERATURE = "temperature"  # K (absolute)
FREQUENCY = "frequency"  # Hz
CAPACITY = "capacity"  # C (coulomb); parse_capacity returns Ah
PRESSURE = "pressure"  # Pa; parse_pressure returns MPa
RESISTANCE = "resistance"  # ohm
CURRENT_DENSITY = "current_density"  # A/m²
C_RATE = "c_rate"  # multiples of the nominal capacity per hour (1 = "1C")
DIMENSIONLESS = "dimensionless"  # fractions: 0.8, "80 %"

_ZERO_CELSIUS_KELVIN = 273.15


class UnitError(CellbenchError, ValueError):
    """Text that is not a quantity of the expected kind (the message says what was expected)."""


@dataclass(frozen=True)
class Quantity:
    """A value in SI base units and its dimension (one of the module's dimension names)."""

    value_si: float
    dimension: str


# SI prefixes that technicians use; both micro signs and "u".
_PREFIXES: dict[str, int] = {  # prefix -> power of ten
    "p": -12,
    "n": -9,
    "u": -6,
    "µ": -6,  # micro sign U+00B5
    "μ": -6,  # Greek mu U+03BC
    "m": -3,
    "k": 3,
    "M": 6,
    "G": 9,
}

# Units that take an SI prefix: symbol -> (dimension, factor to SI).
_PREFIXABLE: dict[str, tuple[str, float]] = {
    "A": (CURRENT, 1.0),
    "V": (VOLTAGE, 1.0),
    "s": (TIME, 1.0),
    "Hz": (FREQUENCY, 1.0),
    "Ah": (CAPACITY, 3600.0),
    "Pa": (PRESSURE, 1.0),
    "ohm": (RESISTANCE, 1.0),
    "Ohm": (RESISTANCE, 1.0),
    "\u03a9": (RESISTANCE, 1.0),  # Greek capital omega
    "\u2126": (RESISTANCE, 1.0),  # ohm sign
}

# Units without prefixes (and spelled-out names): symbol -> (dimension, factor to SI).
_PLAIN: dict[str, tuple[str, float]] = {
    "amp": (CURRENT, 1.0),
    "amps": (CURRENT, 1.0),
    "volt": (VOLTAGE, 1.0),
    "volts": (VOLTAGE, 1.0),
    "sec": (TIME, 1.0),
    "secs": (TIME, 1.0),
    "second": (TIME, 1.0),
    "seconds": (TIME, 1.0),
    "min": (TIME, 60.0),
    "mins": (TIME, 60.0),
    "minute": (TIME, 60.0),
    "minutes": (TIME, 60.0),
    "h": (TIME, 3600.0),
    "hr": (TIME, 3600.0),
    "hrs": (TIME, 3600.0),
    "hour": (TIME, 3600.0),
    "hours": (TIME, 3600.0),
    "d": (TIME, 86400.0),
    "day": (TIME, 86400.0),
    "days": (TIME, 86400.0),
    "bar": (PRESSURE, 1e5),
    "mbar": (PRESSURE, 1e2),
    "psi": (PRESSURE, 6894.757293168361),
    "atm": (PRESSURE, 101325.0),
    "%": (DIMENSIONLESS, 0.01),
    "percent": (DIMENSIONLESS, 0.01),
}

# Temperature units are affine: symbol -> (scale, offset) with kelvin = value * scale + offset.
_TEMPERATURE_UNITS: dict[str, tuple[float, float]] = {
    "K": (1.0, 0.0),
    "degC": (1.0, _ZERO_CELSIUS_KELVIN),
    "°C": (1.0, _ZERO_CELSIUS_KELVIN),
    "℃": (1.0, _ZERO_CELSIUS_KELVIN),
    "deg C": (1.0, _ZERO_CELSIUS_KELVIN),
    "celsius": (1.0, _ZERO_CELSIUS_KELVIN),
    "degF": (5.0 / 9.0, _ZERO_CELSIUS_KELVIN - 32.0 * 5.0 / 9.0),
    "°F": (5.0 / 9.0, _ZERO_CELSIUS_KELVIN - 32.0 * 5.0 / 9.0),
}

# Areas for current densities: symbol -> m².
_AREAS: dict[str, int] = {  # area -> power of ten of its size in m²
    "cm2": -4,
    "cm^2": -4,
    "cm²": -4,
    "mm2": -6,
    "mm^2": -6,
    "mm²": -6,
    "m2": 0,
    "m^2": 0,
    "m²": 0,
}

_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER = rf"[+-]?{_UNSIGNED}"
_NUMBER_RE = re.compile(rf"^\s*({_NUMBER})\s*(.*?)\s*$")
# "C/10", "2C", "-C/2", "0.5 C", "C", "+C/2.5"
_C_RATE_RE = re.compile(
    rf"^\s*(?P<sign>[+-])?\s*(?P<mult>{_UNSIGNED})?\s*C\s*(?:/\s*(?P<div>{_UNSIGNED}))?\s*$"
)
# "1h30min", "1 h 30 min", "2d 3h", "1 min 30 s"
_DURATION_PART_RE = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]+)")
# "1:30:00" (h:min:s) or "1:30" (min:s)
_CLOCK_RE = re.compile(r"^\s*(\d+):([0-5]?\d)(?::([0-5]?\d(?:\.\d*)?))?\s*$")

_MINUTE_M_RE = re.compile(r"(?<=[\d\s])m(?=\s|\d|$)")

_EXAMPLES: dict[str, str] = {
    CURRENT: "'0.5 mA', '-2 mA', 'C/10' or '0.1 mA/cm2'",
    VOLTAGE: "'4.2 V' or '10 mV'",
    TIME: "'90 s', '30 min', '2 h' or '1h30min'",
    TEMPERATURE: "'25 degC', '25 °C' or '298.15 K'",
    FREQUENCY: "'1 MHz' or '100 mHz'",
    CAPACITY: "'2.5 mAh' or '1 Ah'",
    PRESSURE: "'5 MPa', '500 kPa' or '10 bar'",
    RESISTANCE: "'10 ohm' or '1 kΩ'",
    DIMENSIONLESS: "'0.8' or '80 %'",
    "temperature difference": "'0.5 K' or '0.5 degC'",
}


def _normalise(text: str) -> str:
    # Unicode minus and non-breaking / thin spaces appear when protocols are pasted from documents.
    return text.replace("\u2212", "-").replace("\u00a0", " ").replace("\u2009", " ").strip()


def _scale(value: float, factor: float, exponent: int) -> float:
    """value * factor * 10**exponent; divides for negative exponents ("100 µA" is exactly 1e-4)."""
    value = value * factor
    return value * 10**exponent if exponent >= 0 else value / 10 ** (-exponent)


def _unit_factor(unit: str) -> tuple[str, float, int] | None:
    """(dimension, factor, power of ten) to SI of a non-temperature unit symbol, or None."""
    if unit in _PLAIN:
        return (*_PLAIN[unit], 0)
    if unit in _PREFIXABLE:
        return (*_PREFIXABLE[unit], 0)
    if len(unit) > 1 and unit[0] in _PREFIXES and unit[1:] in _PREFIXABLE:
        return (*_PREFIXABLE[unit[1:]], _PREFIXES[unit[0]])
    return None


def _current_density_factor(unit: str) -> tuple[float, int] | None:
    """(factor, power of ten) to A/m² of "mA/cm2", "mA cm-2", "uA/cm^2"...; None if not one."""
    compact = unit.replace(" ", "")
    m = re.fullmatch(r"(.+?)/(.+)", compact)
    if m:
        numerator, area = m.group(1), m.group(2)
    else:
        m = re.fullmatch(r"(.+?)(c?m|mm)(?:-2|⁻²|\^-2)", compact)
        if not m:
            return None
        numerator, area = m.group(1), m.group(2) + "2"
    current = _unit_factor(numerator)
    if current is None or current[0] != CURRENT or area not in _AREAS:
        return None
    return current[1], current[2] - _AREAS[area]


def _expected(dimension: str) -> str:
    name = "duration" if dimension == TIME else dimension.replace("_", " ")
    return f"a {name} such as {_EXAMPLES[dimension]}"


def parse_quantity(text: str | float | int) -> Quantity:
    """Parse a number with a unit (or a bare number: a fraction) into SI.

    >>> parse_quantity("0.5 mA")
    Quantity(value_si=0.0005, dimension='current')
    >>> parse_quantity("C/10")
    Quantity(value_si=0.1, dimension='c_rate')

    Durations may be compound (``"1h30min"``) or a clock (``"1:30:00"``). A bare ``"C"`` unit is a
    C-rate here; :func:`parse_temperature` also reads ``"25 C"`` as degrees Celsius.
    """
    if isinstance(text, bool):
        raise UnitError(f"expected a quantity with a unit, got {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(text):
            raise UnitError(f"expected a finite number, got {text!r}")
        return Quantity(float(text), DIMENSIONLESS)
    if not isinstance(text, str):
        raise UnitError(f"expected a quantity with a unit (text), got {text!r}")
    s = _normalise(text)
    if not s:
        raise UnitError("expected a quantity with a unit, got an empty string")

    m = _C_RATE_RE.match(s)
    if m:
        mult = float(m.group("mult")) if m.group("mult") else 1.0
        div = float(m.group("div")) if m.group("div") else 1.0
        if div == 0:
            raise UnitError(f"C-rate {text!r} divides by zero")
        sign = -1.0 if m.group("sign") == "-" else 1.0
        return Quantity(sign * mult / div, C_RATE)

    clock = _CLOCK_RE.match(s)
    if clock:
        a, b, c = clock.groups()
        seconds = int(a) * 3600 + int(b) * 60 + float(c) if c is not None else int(a) * 60 + int(b)
        return Quantity(float(seconds), TIME)

    m = _NUMBER_RE.match(s)
    if not m:
        raise UnitError(f"expected a number followed by a unit, got {text!r}")
    value = float(m.group(1))
    unit = m.group(2)
    if not math.isfinite(value):
        raise UnitError(f"expected a finite number, got {text!r}")
    if unit == "":
        return Quantity(value, DIMENSIONLESS)
    if unit in _TEMPERATURE_UNITS:
        scale, offset = _TEMPERATURE_UNITS[unit]
        kelvin = value * scale + offset
        if kelvin < 0:
            raise UnitError(f"temperature {text!r} is below absolute zero")
        return Quantity(kelvin, TEMPERATURE)
    found = _unit_factor(unit)
    if found is not None:
        return Quantity(_scale(value, found[1], found[2]), found[0])
    density = _current_density_factor(unit)
    if density is not None:
        return Quantity(_scale(value, *density), CURRENT_DENSITY)
    compound = _parse_compound_duration(s)
    if compound is not None:
        return Quantity(compound, TIME)
    raise UnitError(f"unknown unit {unit!r} in {text!r}")


def _parse_compound_duration(s: str) -> float | None:
    """Seconds of "1h30min" / "2 d 3 h" / "1 min 30 s", or None if s is not such a sum."""
    total = 0.0
    pos = 0
    parts = 0
    for m in _DURATION_PART_RE.finditer(s):
        if m.start() != pos:
            return None
        found = _unit_factor(m.group(2))
        if found is None or found[0] != TIME:
            return None
        total += _scale(float(m.group(1)), found[1], found[2])
        pos = m.end()
        parts += 1
    if parts < 2 or s[pos:].strip():
        return None
    return total


def _parse_as(text: str | float | int, dimension: str) -> float:
    """SI value of text, which must have the given dimension."""
    if isinstance(text, int | float) and not isinstance(text, bool) and dimension != DIMENSIONLESS:
        raise UnitError(f"expected {_expected(dimension)}, got {text!r} (a number without a unit)")
    try:
        q = parse_quantity(text)
    except UnitError as exc:
        raise UnitError(f"expected {_expected(dimension)}: {exc}") from None
    if q.dimension != dimension:
        what = "a number without a unit" if q.dimension == DIMENSIONLESS else f"a {q.dimension}"
        what = what.replace("_", " ")
        raise UnitError(f"expected {_expected(dimension)}, got {text!r} ({what})")
    return q.value_si


def parse_current(
    text: str,
    *,
    nominal_capacity_ah: float | None = None,
    area_cm2: float | None = None,
) -> float:
    """Current in A (positive = charge) from ``"0.5 mA"``, ``"C/10"`` or ``"0.1 mA/cm2"``.

    A C-rate needs ``nominal_capacity_ah`` (1C is the current that delivers the nominal capacity
    in one hour); a current density needs the electrode ``area_cm2``.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        raise UnitError(f"expected {_expected(CURRENT)}, got {text!r} (a number without a unit)")
    try:
        q = parse_quantity(text)
    except UnitError as exc:
        raise UnitError(f"expected {_expected(CURRENT)}: {exc}") from None
    if q.dimension == CURRENT:
        return q.value_si
    if q.dimension == C_RATE:
        if nominal_capacity_ah is None:
            raise UnitError(
                f"{text!r} is a C-rate: it needs the cell's nominal capacity (nominal_capacity_ah)"
            )
        return q.value_si * nominal_capacity_ah
    if q.dimension == CURRENT_DENSITY:
        if area_cm2 is None:
            raise UnitError(f"{text!r} is a current density: it needs the cell's area (area_cm2)")
        return q.value_si * area_cm2 * 1e-4
    raise UnitError(f"expected {_expected(CURRENT)}, got {text!r} (a {q.dimension})")


def parse_voltage(text: str) -> float:
    """Voltage in V from ``"4.2 V"``, ``"10 mV"``."""
    return _parse_as(text, VOLTAGE)


def parse_duration(text: str) -> float:
    """Duration in s from ``"90 s"``, ``"30 min"``, ``"2 h"``, ``"1h30min"`` or ``"1:30:00"``."""
    try:
        seconds = _parse_as(text, TIME)
    except UnitError:
        # "30m", "1h30m": in a duration, a bare "m" can only mean minutes.
        if not isinstance(text, str) or not _MINUTE_M_RE.search(text):
            raise
        seconds = _parse_as(_MINUTE_M_RE.sub("min", text), TIME)
    if seconds < 0:
        raise UnitError(f"a duration cannot be negative, got {text!r}")
    return seconds


def parse_temperature(text: str) -> float:
    """Temperature in °C from ``"25 degC"``, ``"25 °C"``, ``"25 C"`` or ``"298.15 K"``."""
    if isinstance(text, str):
        s = _normalise(text)
        m = _NUMBER_RE.match(s)
        if m and m.group(2) == "C":  # "25 C" is a temperature here, not a C-rate
            text = f"{m.group(1)} degC"
    return _parse_as(text, TEMPERATURE) - _ZERO_CELSIUS_KELVIN


def parse_temperature_difference(text: str) -> float:
    """A temperature difference in K (= °C) from ``"0.5 K"`` or ``"0.5 degC"`` (no offset)."""
    if isinstance(text, str):
        s = _normalise(text)
        m = _NUMBER_RE.match(s)
        if m and m.group(2) in ("K", "degC", "°C", "℃", "C", "deg C", "celsius"):
            return float(m.group(1))
    raise UnitError(f"expected {_expected('temperature difference')}, got {text!r}")


def parse_frequency(text: str) -> float:
    """Frequency in Hz from ``"1 MHz"``, ``"100 mHz"``."""
    hertz = _parse_as(text, FREQUENCY)
    if hertz <= 0:
        raise UnitError(f"a frequency must be positive, got {text!r}")
    return hertz


def parse_capacity(text: str) -> float:
    """Charge in Ah from ``"2.5 mAh"``, ``"1 Ah"``."""
    return _parse_as(text, CAPACITY) / 3600.0


def parse_pressure(text: str) -> float:
    """Pressure in MPa from ``"5 MPa"``, ``"500 kPa"``, ``"10 bar"``, ``"100 psi"``."""
    return _parse_as(text, PRESSURE) * 1e-6


def parse_resistance(text: str) -> float:
    """Resistance in Ω from ``"10 ohm"``, ``"1 kΩ"``."""
    return _parse_as(text, RESISTANCE)


def parse_fraction(text: str | float) -> float:
    """A fraction from ``0.8``, ``"0.8"`` or ``"80 %"``."""
    return _parse_as(text, DIMENSIONLESS)


# Display: the unit each dimension is shown in, with engineering prefixes.
_DISPLAY_UNIT: dict[str, str] = {
    CURRENT: "A",
    VOLTAGE: "V",
    FREQUENCY: "Hz",
    RESISTANCE: "Ω",
}


def format_quantity(value_si: float, dimension: str, *, digits: int = 4) -> str:
    """Short human text of an SI value, e.g. ``0.0005, "current"`` -> ``"500 µA"``.

    ``parse_quantity(format_quantity(v, d))`` gives back v to ``digits`` significant digits.
    """
    if dimension == TIME:
        return _format_duration(value_si, digits)
    if dimension == TEMPERATURE:
        return f"{value_si - _ZERO_CELSIUS_KELVIN:.{digits}g} degC"
    if dimension == CAPACITY:
        return _with_prefix(value_si / 3600.0, "Ah", digits)
    if dimension == PRESSURE:
        return f"{value_si * 1e-6:.{digits}g} MPa"
    if dimension == CURRENT_DENSITY:
        return _with_prefix(value_si * 1e-4, "A", digits) + "/cm2"
    if dimension == C_RATE:
        return f"{value_si:.{digits}g}C"
    if dimension == DIMENSIONLESS:
        return f"{value_si * 100:.{digits}g} %"
    return _with_prefix(value_si, _DISPLAY_UNIT[dimension], digits)


def _with_prefix(value: float, unit: str, digits: int) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    exponent = int(math.floor(math.log10(abs(value)) / 3) * 3)
    exponent = max(-12, min(9, exponent))
    prefix = {-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}[exponent]
    return f"{value / 10**exponent:.{digits}g} {prefix}{unit}"


def _format_duration(seconds: float, digits: int) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    if seconds >= 3600:
        return f"{seconds / 3600:.{digits}g} h"
    if seconds >= 60:
        return f"{seconds / 60:.{digits}g} min"
    return f"{seconds:.{digits}g} s"
