"""The data model, defined once: the columns of ``samples``, ``spectra``, ``events``; ``run.json``.

Column names follow the Battery Data Format (BDF): lower-case quantity with the unit spelled out in
the name, so a frame read from any run or vendor file travels to other tools unchanged. Current is
positive on charge. Impedance follows the instrument convention Z = Z' + j Z'' (``z_imag_ohm`` is
negative for a capacitive arc).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from cellbench.core.errors import SchemaError

SCHEMA_VERSION = 1

TABLES = ("samples", "spectra", "events")


@dataclass(frozen=True)
class Column:
    """One column: name (unit in the name), polars dtype, whether every row must carry it."""

    name: str
    dtype: pl.DataType
    required: bool
    doc: str


def _c(name: str, dtype: pl.DataType, required: bool, doc: str) -> Column:
    return Column(name, dtype, required, doc)


SAMPLES: tuple[Column, ...] = (
    _c("channel", pl.String(), True, "channel name, as in the station file"),
    _c("test_time_second", pl.Float64(), True, "time since the run started, s"),
    _c("unix_time_second", pl.Float64(), True, "wall-clock time, s since 1970-01-01 UTC"),
    _c("voltage_volt", pl.Float64(), True, "cell voltage, V"),
    _c("current_ampere", pl.Float64(), True, "cell current, A, positive on charge"),
    _c("cycle_count", pl.Int32(), True, "cycle number, from 1 (BDF)"),
    _c("step_count", pl.Int32(), True, "running count of steps executed, from 1 (BDF)"),
    _c("step_index", pl.Int32(), True, "index of the protocol step being executed, from 0 (BDF)"),
    _c("temperature_celsius", pl.Float64(), False, "cell or chamber temperature, degC"),
    _c("pressure_megapascal", pl.Float64(), False, "stack pressure, MPa"),
    _c("charging_capacity_ampere_hour", pl.Float64(), False, "charge in on charge, cycle, Ah"),
    _c("discharging_capacity_ampere_hour", pl.Float64(), False, "charge passed on discharge, Ah"),
    _c("charging_energy_watt_hour", pl.Float64(), False, "energy in on charge in cycle, Wh"),
    _c("discharging_energy_watt_hour", pl.Float64(), False, "energy out on discharge, Wh"),
    _c("step_capacity_ampere_hour", pl.Float64(), False, "signed charge in the step, Ah"),
    _c("internal_resistance_ohm", pl.Float64(), False, "instrument-reported R, ohm"),
)

SPECTRA: tuple[Column, ...] = (
    _c("channel", pl.String(), True, "channel name"),
    _c("sweep_index", pl.Int32(), True, "sweep number within the run, from 0"),
    _c("test_time_second", pl.Float64(), True, "time of the point since the run started, s"),
    _c("unix_time_second", pl.Float64(), True, "wall-clock time of the point, s"),
    _c("frequency_hertz", pl.Float64(), True, "frequency, Hz"),
    _c("z_real_ohm", pl.Float64(), True, "real part of impedance, ohm"),
    _c("z_imag_ohm", pl.Float64(), True, "imaginary part of impedance, ohm (negative: capacitive)"),
    _c("cycle_count", pl.Int32(), False, "cycle number when the sweep ran"),
    _c("step_index", pl.Int32(), False, "protocol step of the sweep"),
    _c("temperature_celsius", pl.Float64(), False, "temperature during the sweep, degC"),
    _c("dc_voltage_volt", pl.Float64(), False, "DC voltage during the point, V"),
    _c("dc_current_ampere", pl.Float64(), False, "DC current during the point, A"),
)

EVENT_KINDS = (
    "run_start",
    "run_end",
    "step_start",
    "step_end",
    "alarm",
    "fault",
    "gap",
    "reconnect",
    "status",
    "note",
)
SEVERITIES = ("info", "warning", "alarm", "error")

EVENTS: tuple[Column, ...] = (
    _c("channel", pl.String(), True, "channel name, or '' for the whole run"),
    _c("test_time_second", pl.Float64(), True, "time since the run started, s"),
    _c("unix_time_second", pl.Float64(), True, "wall-clock time, s"),
    _c("kind", pl.String(), True, "one of EVENT_KINDS"),
    _c("severity", pl.String(), True, "one of SEVERITIES"),
    _c("message", pl.String(), True, "human-readable text"),
    _c("step_index", pl.Int32(), False, "protocol step"),
    _c("cycle_count", pl.Int32(), False, "cycle number"),
    _c("duration_second", pl.Float64(), False, "duration of a gap, s"),
    _c("data", pl.String(), False, "machine-readable detail, JSON"),
)

COLUMNS: dict[str, tuple[Column, ...]] = {"samples": SAMPLES, "spectra": SPECTRA, "events": EVENTS}


def schema(table: str, *, optional: bool = True) -> pl.Schema:
    """The polars schema of ``table``; with ``optional=False`` only the required columns."""
    cols = _columns(table)
    return pl.Schema({c.name: c.dtype for c in cols if optional or c.required})


def _columns(table: str) -> tuple[Column, ...]:
    try:
        return COLUMNS[table]
    except KeyError:
        raise SchemaError("table", [f"unknown table {table!r}; expected one of {TABLES}"]) from None


def validate_frame(table: str, df: pl.DataFrame) -> None:
    """Raise one :class:`SchemaError` listing every missing column and wrong dtype.

    Columns outside the data model are allowed (vendor extras), but a known column must have its
    dtype, and a required column must be present and hold no nulls.
    """
    problems: list[str] = []
    for col in _columns(table):
        if col.name not in df.columns:
            if col.required:
                problems.append(f"missing required column {col.name!r} ({col.doc})")
            continue
        got = df.schema[col.name]
        if got != col.dtype:
            problems.append(f"column {col.name!r} has dtype {got}, expected {col.dtype}")
        elif col.required and df[col.name].null_count():
            problems.append(f"required column {col.name!r} has {df[col.name].null_count()} nulls")
    if problems:
        raise SchemaError(f"{table} frame", problems)


def conform(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Cast known columns to the model's dtypes and order them first; then validate."""
    cols = _columns(table)
    known = [c for c in cols if c.name in df.columns]
    exprs = [pl.col(c.name).cast(c.dtype, strict=False) for c in known]
    extra = [n for n in df.columns if n not in {c.name for c in cols}]
    out = df.select([*exprs, *extra])
    validate_frame(table, out)
    return out


def empty(table: str, *, optional: bool = False) -> pl.DataFrame:
    """An empty frame with the table's columns (required only, unless ``optional``)."""
    return pl.DataFrame(schema=schema(table, optional=optional))


# ----------------------------------------------------------------------------------- run.json

RUN_STATUSES = ("running", "completed", "stopped", "aborted", "interrupted")


@dataclass
class CellBuild:
    """How the cell was made: what inter-laboratory studies ask every paper to report. Units in
    the names; None (numbers) or "" (text) where not recorded. ``relative_density`` is a
    fraction of the theoretical density (0 < x <= 1); compositions are free text as the lab
    writes them ("NMC811:Li6PS5Cl:VGCF 70:27:3 wt%")."""

    batch: str = ""  # the build batch replicates are grouped by
    build_date: str = ""  # ISO 8601
    operator: str = ""
    electrolyte: str = ""  # separator / pellet material, e.g. "Li6PS5Cl", "LLZTO", "PEO-LiTFSI"
    electrolyte_mass_g: float | None = None
    electrolyte_thickness_cm: float | None = None
    relative_density: float | None = None
    fabrication_pressure_megapascal: float | None = None
    fabrication_temperature_celsius: float | None = None
    fabrication_time_second: float | None = None
    stack_pressure_megapascal: float | None = None
    positive_electrode_composition: str = ""
    positive_electrode_mass_g: float | None = None
    positive_electrode_thickness_cm: float | None = None
    negative_electrode_composition: str = ""  # "Li foil", "Li-In", "graphite:LPSCl 60:40 wt%"
    negative_electrode_mass_g: float | None = None
    negative_electrode_thickness_cm: float | None = None
    electrode_contacts: str = ""  # blocking contacts of a conductivity pellet, e.g. "Au, sputtered"
    notes: str = ""

    #: numbers that may be zero or negative (a temperature); the rest must be positive
    SIGNED = ("fabrication_temperature_celsius",)

    @classmethod
    def from_mapping(cls, data: Any) -> tuple[CellBuild, list[tuple[str, str]]]:
        """A build record from a mapping (a TOML table, run.json) and its problems as
        (key, message) pairs; the record keeps only the values that are right."""
        if not isinstance(data, Mapping):
            return cls(), [("", f"must be a table of build values, got {data!r}")]
        fields_ = cls.__dataclass_fields__
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for key, v in data.items():
            if key not in fields_:
                problems.append((key, f"unknown build key {key!r}; known: {', '.join(fields_)}"))
            elif fields_[key].type == "str":
                if isinstance(v, str):
                    values[key] = v
                else:
                    problems.append((key, f"must be text in quotes, got {v!r}"))
            elif v is None:
                continue
            elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                problems.append((key, f"must be a number (no quotes), got {v!r}"))
            elif key == "relative_density" and not 0 < v <= 1:
                problems.append((key, f"must be a fraction in (0, 1], got {v!r}"))
            elif key not in cls.SIGNED and v <= 0:
                problems.append((key, f"must be a positive number, got {v!r}"))
            else:
                values[key] = float(v)
        return cls(**values), problems

    def recorded(self) -> dict[str, Any]:
        """The values that were recorded (no None, no empty text)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass
class Cell:
    """The cell under test. Units in the names; None where unknown. ``build``: how it was made
    (None: not recorded; a mapping given here is read into a :class:`CellBuild`)."""

    name: str = ""
    chemistry: str = ""
    area_cm2: float | None = None
    thickness_cm: float | None = None
    active_mass_g: float | None = None
    nominal_capacity_ah: float | None = None
    notes: str = ""
    build: CellBuild | None = None

    def __post_init__(self) -> None:
        self._build_problems: list[tuple[str, str]] = []
        if self.build is not None and not isinstance(self.build, CellBuild):
            self.build, self._build_problems = CellBuild.from_mapping(self.build)

    def problems(self) -> list[str]:
        out = []
        for key in ("area_cm2", "thickness_cm", "active_mass_g", "nominal_capacity_ah"):
            v = getattr(self, key)
            if v is None:
                continue
            if not isinstance(v, int | float) or isinstance(v, bool):
                out.append(f"cell.{key} must be a number, got {v!r}")
            elif not math.isfinite(v) or v <= 0:
                out.append(f"cell.{key} must be a positive finite number, got {v!r}")
        out += [f"cell.build.{k}: {m}" if k else f"cell.build {m}" for k, m in self._build_problems]
        return out


@dataclass
class RunMeta:
    """Contents of ``run.json``: what ran, on what, with which software, and how it ended."""

    run_id: str
    start_time: str  # ISO 8601, UTC
    status: str = "running"
    protocol: dict[str, Any] = field(default_factory=dict)
    station: dict[str, Any] = field(default_factory=dict)
    cell: Cell = field(default_factory=Cell)
    software_version: str = ""
    end_time: str | None = None
    schema_version: int = SCHEMA_VERSION
    ground_truth: dict[str, Any] | None = None  # simulated runs: the simulated cell's parameters
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "run.json") -> RunMeta:
        """Build and validate; one :class:`SchemaError` names every problem found."""
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise SchemaError(source, [f"expected a JSON object, got {type(data).__name__}"])
        known = {f for f in cls.__dataclass_fields__}
        for key in ("run_id", "start_time"):
            if not isinstance(data.get(key), str) or not data.get(key):
                problems.append(f"{key!r} must be a non-empty string")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
            problems.append(f"schema_version {version!r} not supported (reads 1..{SCHEMA_VERSION})")
        status = data.get("status", "running")
        if status not in RUN_STATUSES:
            problems.append(f"status {status!r} is not one of {RUN_STATUSES}")
        for key in ("protocol", "station", "extra"):
            if key in data and not isinstance(data[key], Mapping):
                problems.append(f"{key!r} must be an object")
        cell_data = data.get("cell", {}) or {}
        cell = Cell()
        if not isinstance(cell_data, Mapping):
            problems.append("'cell' must be an object")
        else:
            unknown = set(cell_data) - set(Cell.__dataclass_fields__)
            if unknown:
                problems.append(f"cell has unknown keys {sorted(unknown)}")
            cell = Cell(**{k: v for k, v in cell_data.items() if k in Cell.__dataclass_fields__})
            problems.extend(cell.problems())
        unknown_top = set(data) - known
        if unknown_top:
            problems.append(f"unknown keys {sorted(unknown_top)}")
        if problems:
            raise SchemaError(source, problems)
        kwargs = {k: v for k, v in data.items() if k in known and k != "cell"}
        return cls(cell=cell, **kwargs)
