"""PalmSens MethodSCRIPT wire format: numeric literals and data packages.

From the PalmSens "MethodSCRIPT v1.6" communication protocol:

- A literal in a script is an integer with an optional SI prefix: ``100m`` = 0.1, ``-1500u`` =
  -1.5e-3, ``200k`` = 2e5 (prefixes a f p n u m k M G T P E; ``i`` marks a plain integer).
- A data package is one line ``P<var>;<var>;...\\n``. Each variable is a two-letter type (``ab``
  WE vs RE potential, ``ba`` WE current, ``da`` applied potential, ``db`` applied current,
  ``cc`` Z', ``cd`` Z'', ``dc`` applied frequency, ...),
  seven hex digits holding the value offset by 2**27, and an SI prefix character; optional
  metadata follow after commas: ``1<hex>`` status flags (1 timing error, 2 overload,
  4 underload, 8 overload warning), ``2<hex><hex>`` current range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SI_PREFIXES = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "i": 1.0,
}
_OFFSET = 2**27
STATUS_TIMING_ERROR = 0x1
STATUS_OVERLOAD = 0x2
STATUS_UNDERLOAD = 0x4
STATUS_OVERLOAD_WARNING = 0x8

#: The variable types cellbench reads, with their units.
VAR_TYPES = {
    "ab": ("WE vs RE potential", "V"),
    "ba": ("WE current", "A"),
    "cc": ("Z real", "ohm"),
    "cd": ("Z imaginary", "ohm"),
    "da": ("applied potential", "V"),
    "db": ("applied current", "A"),
    "dc": ("applied frequency", "Hz"),
    "eb": ("time", "s"),
}

# Prefixes for literals, largest first: the first that represents the value exactly wins.
_LITERAL_PREFIXES = ("G", "M", "k", "", "m", "u", "n", "p", "f")
_LITERAL_FACTORS = {"": 1.0, **{p: SI_PREFIXES[p] for p in _LITERAL_PREFIXES if p}}


def si_literal(value: float) -> str:
    """A script literal: ``0.1`` -> ``"100m"``, ``4.2`` -> ``"4200m"``, ``0`` -> ``"0"``."""
    if not math.isfinite(value):
        raise ValueError(f"MethodSCRIPT literals must be finite, got {value!r}")
    if value == 0:
        return "0"
    for prefix in _LITERAL_PREFIXES:
        mantissa = value / _LITERAL_FACTORS[prefix]
        rounded = round(mantissa)
        if (
            rounded != 0
            and abs(mantissa - rounded) <= 1e-9 * abs(mantissa)
            and abs(rounded) < 2**31
        ):
            return f"{rounded}{prefix}"
    return f"{round(value / 1e-15)}f"  # below 1 fA resolution: rounded


def parse_si_literal(text: str) -> float:
    """Inverse of :func:`si_literal` (also accepts a decimal point and the ``i`` suffix)."""
    text = text.strip()
    if not text:
        raise ValueError("empty literal")
    prefix = text[-1]
    if prefix in SI_PREFIXES and not prefix.isdigit():
        return float(text[:-1]) * SI_PREFIXES[prefix]
    return float(text)


def encode_value(value: float) -> str:
    """Seven hex digits and an SI prefix (``"8030D40m"``), the finest prefix the value fits."""
    if math.isnan(value):
        return "     nan"
    for prefix in ("f", "p", "n", "u", "m", " ", "k", "M", "G", "T"):
        raw = round(value / SI_PREFIXES[prefix])
        if -_OFFSET <= raw < _OFFSET:
            return f"{raw + _OFFSET:07X}{prefix}"
    raise ValueError(f"value {value!r} does not fit a MethodSCRIPT package")


def decode_value(text: str) -> float:
    """Eight characters (seven hex digits and the SI prefix) -> value."""
    if text == "     nan":
        return math.nan
    if len(text) != 8:
        raise ValueError(f"expected 7 hex digits and an SI prefix, got {text!r}")
    return (int(text[:7], 16) - _OFFSET) * SI_PREFIXES[text[7]]


@dataclass(frozen=True)
class Variable:
    """One variable of a data package."""

    type: str
    value: float
    status: int = 0
    current_range: int | None = None


@dataclass(frozen=True)
class Package:
    variables: tuple[Variable, ...] = field(default_factory=tuple)

    def get(self, var_type: str) -> Variable | None:
        return next((v for v in self.variables if v.type == var_type), None)

    @property
    def status(self) -> int:
        """Status flags of all variables or-ed together."""
        flags = 0
        for variable in self.variables:
            flags |= variable.status
        return flags


def encode_package(values: list[tuple[str, float]], *, status: int = 0) -> str:
    """``[("ab", 3.7), ("ba", 1e-3)]`` -> ``"Pab...;ba...,1x"`` (no line terminator)."""
    parts = []
    for var_type, value in values:
        part = f"{var_type}{encode_value(value)}"
        if status:
            part += f",1{status:X}"
        parts.append(part)
    return "P" + ";".join(parts)


def parse_package(line: str) -> Package:
    """Parse one ``P...`` line (terminator stripped). Raises ValueError if malformed."""
    if not line.startswith("P"):
        raise ValueError(f"not a data package: {line!r}")
    variables = []
    for chunk in line[1:].split(";"):
        main, *meta = chunk.split(",")
        if len(main) != 10:
            raise ValueError(f"malformed variable {chunk!r} in {line!r}")
        status, current_range = 0, None
        for token in meta:
            if len(token) == 2 and token[0] == "1":
                status = int(token[1], 16)
            elif len(token) == 3 and token[0] == "2":
                current_range = int(token[1:], 16)
        variables.append(Variable(main[:2], decode_value(main[2:]), status, current_range))
    return Package(tuple(variables))
