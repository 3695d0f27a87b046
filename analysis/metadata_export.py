"""A run's metadata for other tools: the Battery Data Format (BDF) metadata sidecar and BattINFO
JSON-LD.

**BDF sidecar** (:func:`bdf_metadata`). The BDF time-series files (``*.bdf.csv``) carry their
metadata in a JSON sidecar whose sections are BattINFO entity records under ``battinfo_``
keys: ``battinfo_test`` (``test``: name, identifier, kind, started_at / ended_at as Unix
seconds, status, instrument_name, protocol_name, conditions), ``battinfo_cell``
(``cell_instance``: name, batch_id, manufactured_at), ``battinfo_equipment``, the ``bdf`` read
section (``source``) and ``extras`` for what the records have no field for. cellbench puts
the cell's geometry and build record (masses, thicknesses, relative density, fabrication and
stack pressure, electrolyte, electrode compositions) in ``extras.cellbench_cell`` with the unit
spelled out in each name, and the run's conditions (temperature set points, pressure, limits)
in ``test.conditions``.

**BattINFO JSON-LD** (:func:`battinfo_jsonld`). A JSON-LD document in the EMMO
domain-battery vocabulary BattINFO uses (context ``https://w3id.org/emmo/domain/battery/
context``): a ``BatteryCell`` with ``hasPositiveElectrode`` / ``hasNegativeElectrode`` /
``hasElectrolyte``, quantities as ``hasProperty`` nodes (``@type`` the quantity, a
``hasNumericalPart`` ``RealData`` value and ``hasMeasurementUnit`` an EMMO unit), and the test
as a ``schema:Action`` on the cell. Quantities EMMO has no class for (relative density,
fabrication pressure) are typed ``ConventionalProperty`` with an ``rdfs:label`` and a term in
the cellbench namespace (``cb:``), so nothing recorded is dropped and nothing is given a class
it does not have.

Both take :class:`cellbench.core.schema.RunMeta` (``run.json``); nothing is read from the
instruments, and numbers keep the units of the record.
"""

from __future__ import annotations

import datetime as _dt
import tomllib
from collections.abc import Mapping
from typing import Any

from cellbench.core import units
from cellbench.core.schema import Cell, CellBuild, RunMeta
from cellbench.core.units import UnitError

EMMO_BATTERY_CONTEXT = "https://w3id.org/emmo/domain/battery/context"
CELLBENCH_TERMS = "urn:cellbench:term:"
BDF_ONTOLOGY = "https://w3id.org/battery-data-alliance/ontology/battery-data-format#"

#: protocol step kinds -> the BattINFO ``test.kind`` they make a run (first match wins)
_KINDS = (
    ("gitt", "gitt"),
    ("ici", "ici"),
    ("hppc", "hppc"),
    ("pulse", "dcir"),
    ("ccd", "characterization"),
    ("cc", "cycling"),
    ("cccv", "cycling"),
    ("eis", "eis"),
)

#: record key -> (EMMO quantity class or None, EMMO unit, cellbench term, label)
_QUANTITIES: dict[str, tuple[str | None, str, str, str]] = {
    "area_cm2": ("Area", "emmo:SquareCentiMetre", "area", "electrode area"),
    "thickness_cm": ("Thickness", "emmo:CentiMetre", "thickness", "cell thickness"),
    "active_mass_g": ("Mass", "emmo:Gram", "active_mass", "active material mass"),
    "nominal_capacity_ah": (
        "NominalCapacity",
        "emmo:AmpereHour",
        "nominal_capacity",
        "nominal capacity",
    ),
    "electrolyte_mass_g": ("Mass", "emmo:Gram", "electrolyte_mass", "electrolyte mass"),
    "electrolyte_thickness_cm": (
        "Thickness",
        "emmo:CentiMetre",
        "electrolyte_thickness",
        "electrolyte thickness",
    ),
    "relative_density": (None, "emmo:UnitOne", "relative_density", "relative density"),
    "fabrication_pressure_megapascal": (
        None,
        "emmo:MegaPascal",
        "fabrication_pressure",
        "fabrication (densification) pressure",
    ),
    "fabrication_temperature_celsius": (
        None,
        "emmo:DegreeCelsius",
        "fabrication_temperature",
        "fabrication temperature",
    ),
    "fabrication_time_second": (None, "emmo:Second", "fabrication_time", "fabrication time"),
    "stack_pressure_megapascal": (
        "Pressure",
        "emmo:MegaPascal",
        "stack_pressure",
        "stack pressure",
    ),
    "positive_electrode_mass_g": ("Mass", "emmo:Gram", "positive_electrode_mass", "mass"),
    "positive_electrode_thickness_cm": (
        "Thickness",
        "emmo:CentiMetre",
        "positive_electrode_thickness",
        "thickness",
    ),
    "negative_electrode_mass_g": ("Mass", "emmo:Gram", "negative_electrode_mass", "mass"),
    "negative_electrode_thickness_cm": (
        "Thickness",
        "emmo:CentiMetre",
        "negative_electrode_thickness",
        "thickness",
    ),
}


def _unix(iso: str | None) -> int | None:
    """Whole Unix seconds of an ISO 8601 time (None when absent or unreadable)."""
    if not iso:
        return None
    try:
        t = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp())


def _protocol_steps(meta: RunMeta) -> list[dict[str, Any]]:
    """The steps of the protocol text kept in ``run.json``, loops opened (empty when the run has
    no readable protocol text: a vendor file's, a damaged one)."""
    text = meta.protocol.get("text") if isinstance(meta.protocol, Mapping) else None
    if not isinstance(text, str):
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    out: list[dict[str, Any]] = []

    def visit(steps: Any) -> None:
        for s in steps if isinstance(steps, list) else []:
            if isinstance(s, Mapping):
                out.append(dict(s))
                visit(s.get("steps"))

    visit(data.get("step"))
    return out


def _parsed(steps: list[dict[str, Any]], kind: str, key: str, parse: Any) -> list[float]:
    values = []
    for s in steps:
        if s.get("type") == kind and key in s:
            try:
                values.append(float(parse(s[key])))
            except (UnitError, TypeError, ValueError):
                continue
    return values


def battinfo_test_kind(meta: RunMeta) -> str:
    """The BattINFO ``test.kind`` of a run, from its protocol's step kinds."""
    kinds = {str(s.get("type", "")) for s in _protocol_steps(meta)} - {"loop"}
    if "temperature" in kinds and kinds <= {"temperature", "eis", "rest", "ocv"}:
        return "impedance"  # a conductivity (EIS against temperature) run
    for kind, battinfo in _KINDS:
        if kind in kinds:
            return battinfo
    return "other"


def _conditions(meta: RunMeta) -> dict[str, Any]:
    """Test conditions: temperature set points, EIS band, safety limits, stack pressure."""
    steps = _protocol_steps(meta)
    out: dict[str, Any] = {}
    temps = _parsed(steps, "temperature", "setpoint", units.parse_temperature)
    if temps:
        out["temperature_setpoints_celsius"] = temps
    pressures = _parsed(steps, "pressure", "setpoint", units.parse_pressure)
    if pressures:
        out["pressure_setpoints_megapascal"] = pressures
    band = _parsed(steps, "eis", "start", units.parse_frequency)
    band += _parsed(steps, "eis", "stop", units.parse_frequency)
    if band:
        out["eis_frequency_max_hertz"] = max(band)
        out["eis_frequency_min_hertz"] = min(band)
    safety = meta.protocol.get("safety") or {}
    for key, value in safety.items() if isinstance(safety, Mapping) else ():
        if value is not None and isinstance(value, int | float):
            out[f"limit_{key}"] = value
    build = meta.cell.build
    if build is not None and build.stack_pressure_megapascal is not None:
        out["stack_pressure_megapascal"] = build.stack_pressure_megapascal
    return out


def _cell_record(cell: Cell) -> dict[str, Any]:
    """The cell's recorded values (geometry, then the build record), units in the names."""
    out = {
        k: v
        for k, v in (
            ("name", cell.name),
            ("chemistry", cell.chemistry),
            ("area_cm2", cell.area_cm2),
            ("thickness_cm", cell.thickness_cm),
            ("active_mass_g", cell.active_mass_g),
            ("nominal_capacity_ah", cell.nominal_capacity_ah),
            ("notes", cell.notes),
        )
        if v not in (None, "")
    }
    if cell.build is not None:
        out["build"] = cell.build.recorded()
    return out


def bdf_metadata(meta: RunMeta, *, source: str | None = None) -> dict[str, Any]:
    """The BDF metadata sidecar of a run (module doc); JSON-ready."""
    cell = meta.cell
    build = cell.build or CellBuild()
    steps_text = meta.protocol.get("name") if isinstance(meta.protocol, Mapping) else None
    instruments = [
        str(i.get("driver", "")) + (f" {i['name']}" if i.get("name") else "")
        for i in (meta.station.get("instruments") or [])
        if isinstance(i, Mapping)
    ]
    test: dict[str, Any] = {
        "identifier": meta.run_id,
        "name": meta.run_id,
        "kind": battinfo_test_kind(meta),
        "started_at": _unix(meta.start_time),
        "ended_at": _unix(meta.end_time),
        "status": meta.status if meta.status in ("running", "completed", "aborted") else "other",
        "protocol_name": steps_text or None,
        "instrument_name": ", ".join(instruments) or None,
        "conditions": _conditions(meta) or None,
    }
    cell_instance = {
        "name": cell.name or None,
        "batch_id": build.batch or None,
        "manufactured_at": build.build_date or None,
    }
    notes = [n for n in (cell.notes, build.notes) if n]
    return _drop_empty(
        {
            "battinfo_test": {
                "test": test,
                "provenance": {
                    "source_type": "simulation" if meta.ground_truth else "measurement",
                    "workflow_version": f"cellbench {meta.software_version}".strip(),
                },
            },
            "battinfo_cell": {"cell_instance": cell_instance, "notes": notes or None},
            "battinfo_equipment": {"equipment": {"name": meta.station.get("name")}},
            "bdf": {"source": source},
            "extras": {
                "cellbench_cell": _cell_record(cell),
                "cellbench_run": {
                    "run_id": meta.run_id,
                    "schema_version": meta.schema_version,
                    "status": meta.status,
                },
            },
        }
    )


def _drop_empty(obj: Any) -> Any:
    """Without None values, empty text, and the dicts and lists they leave empty."""
    if isinstance(obj, Mapping):
        out = {k: _drop_empty(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v not in (None, "", {}, [])}
    if isinstance(obj, list):
        return [x for x in (_drop_empty(v) for v in obj) if x not in (None, "", {}, [])]
    return obj


def _quantity(key: str, value: float) -> dict[str, Any]:
    cls, unit, term, label = _QUANTITIES[key]
    types = [cls, "ConventionalProperty"] if cls else ["ConventionalProperty"]
    node: dict[str, Any] = {
        "@type": types,
        "rdfs:label": label,
        "hasNumericalPart": {"@type": "RealData", "hasNumberValue": value},
        "hasMeasurementUnit": unit,
    }
    if cls is None:
        node["schema:propertyID"] = f"cb:{term}"
    return node


def _properties(values: Mapping[str, Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [_quantity(k, float(values[k])) for k in keys if values.get(k) is not None]


def battinfo_jsonld(meta: RunMeta) -> dict[str, Any]:
    """The run's cell and test as BattINFO JSON-LD (module doc)."""
    cell = meta.cell
    build = cell.build or CellBuild()
    b = build.recorded()
    cell_values = {
        "area_cm2": cell.area_cm2,
        "thickness_cm": cell.thickness_cm,
        "active_mass_g": cell.active_mass_g,
        "nominal_capacity_ah": cell.nominal_capacity_ah,
    }
    node: dict[str, Any] = {
        "@id": f"cb:cell/{_slug(cell.name or meta.run_id)}",
        "@type": "BatteryCell",
        "schema:name": cell.name or None,
        "schema:identifier": cell.name or None,
        "schema:description": cell.chemistry or None,
        "hasProperty": _properties(cell_values, tuple(cell_values))
        + _properties(b, ("stack_pressure_megapascal",)),
    }
    electrolyte = _properties(b, ("electrolyte_mass_g", "electrolyte_thickness_cm"))
    electrolyte += _properties(
        b,
        (
            "relative_density",
            "fabrication_pressure_megapascal",
            "fabrication_temperature_celsius",
            "fabrication_time_second",
        ),
    )
    if b.get("electrolyte") or electrolyte:
        node["hasElectrolyte"] = {
            "@type": "Electrolyte",
            "rdfs:label": b.get("electrolyte") or "electrolyte",
            "hasProperty": electrolyte,
        }
    for side, key in (("Positive", "positive"), ("Negative", "negative")):
        props = _properties(b, (f"{key}_electrode_mass_g", f"{key}_electrode_thickness_cm"))
        composition = b.get(f"{key}_electrode_composition")
        if composition or props:
            node[f"has{side}Electrode"] = {
                "@type": "Electrode",
                "rdfs:label": f"{key} electrode",
                "schema:description": composition or None,
                "hasProperty": props,
            }
    if b.get("electrode_contacts"):
        node["cb:electrodeContacts"] = b["electrode_contacts"]
    if b.get("batch"):
        node["cb:batch"] = b["batch"]
    if b.get("build_date"):
        node["schema:productionDate"] = b["build_date"]
    if b.get("operator"):
        node["schema:creator"] = {"@type": "schema:Person", "schema:name": b["operator"]}
    test = {
        "@id": f"cb:run/{_slug(meta.run_id)}",
        "@type": "schema:Action",
        "schema:name": meta.protocol.get("name") or meta.run_id,
        "schema:identifier": meta.run_id,
        "schema:startTime": meta.start_time,
        "schema:endTime": meta.end_time,
        "schema:actionStatus": meta.status,
        "schema:object": {"@id": node["@id"]},
        "cb:testKind": battinfo_test_kind(meta),
        "cb:conditions": _conditions(meta) or None,
        "schema:instrument": f"cellbench {meta.software_version}".strip(),
    }
    return _drop_empty(
        {
            "@context": [
                EMMO_BATTERY_CONTEXT,
                {
                    "schema": "https://schema.org/",
                    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
                    "emmo": "https://w3id.org/emmo#",
                    "cb": CELLBENCH_TERMS,
                    "bdf": BDF_ONTOLOGY,
                },
            ],
            "@graph": [node, test],
        }
    )


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return keep.strip("-") or "unnamed"
