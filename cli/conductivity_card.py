"""``cellbench analyze conductivity FILE... --card``: the conductivity report card
(:mod:`cellbench.analysis.conductivity_card`) of each data set, as text or JSON.

What the CSV does not hold comes from ``--run RUN`` (the run folder of the measurement: its
cell and build record, the EIS band and amplitude of its protocol, the equilibrium notes its
EIS steps recorded, the stack pressure its gauge logged) and from the options, which win.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError


def add_card_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("report card (--card)")
    g.add_argument(
        "--card",
        action="store_true",
        help="print the conductivity report card: sigma(25 degC), Ea with interval, geometry, "
        "density, pressures, contacts, model, equilibration, and what is missing",
    )
    g.add_argument("--run", type=Path, metavar="RUN", help="the run folder the data came from")
    g.add_argument("--material", help="electrolyte material (default: the run's build record)")
    g.add_argument("--relative-density", type=float, help="fraction of theoretical density")
    g.add_argument("--fabrication-pressure-mpa", type=float, help="pellet pressing pressure, MPa")
    g.add_argument("--stack-pressure-mpa", type=float, help="stack pressure while measured, MPa")
    g.add_argument("--contacts", help='electrode contacts, e.g. "Au, sputtered"')
    g.add_argument(
        "--conductivity-kind",
        choices=("total", "bulk", "grain_boundary"),
        help="which resistance sigma was computed from",
    )
    g.add_argument("--impedance-model", help='equivalent circuit, e.g. "p(R1,CPE1)-CPE2"')
    g.add_argument(
        "--electrodes",
        choices=("any", "blocking"),
        default="any",
        help="FILE a run or EIS file: fit each sweep with the blocking-electrode templates, or "
        "(any, default) with the circuit chosen per sweep, arcs assigned by capacitance",
    )


#: what conductivity_points_for fitted, by source path: the circuits and the kind (for the card)
FITTED: dict[str, dict[str, Any]] = {}


def _is_conductivity_table(path: Path) -> bool:
    """A CSV of conductivity or resistance against temperature (the header, the first line
    that is not a # comment, names columns), not an impedance export (a CSV without a header,
    or a vendor EIS file)."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                text = line.strip()
                if text and not text.startswith("#"):
                    return "temperature" in text.lower() or not text[0].isdigit()
    except OSError:
        return True
    return True


def conductivity_points_for(path: Path, args: argparse.Namespace, from_csv: Any) -> Any:
    """The points of FILE: a conductivity CSV through ``from_csv`` (as before); a run folder or
    an impedance file by fitting its sweeps (:mod:`cellbench.analysis.conductivity_run`), the
    geometry from the options or the run's cell."""
    from cellbench.daq.loaders import is_run

    if not is_run(path) and (not path.is_file() or _is_conductivity_table(path)):
        return from_csv(path, args.thickness_cm, args.area_cm2)  # its errors name the file
    from cellbench.analysis.conductivity_run import conductivity_from_spectra
    from cellbench.daq.loaders import load_spectra

    thickness, area = args.thickness_cm, args.area_cm2
    if is_run(path) and (thickness is None or area is None):
        from cellbench.daq.store import open_run

        cell = open_run(path).meta.cell
        thickness = thickness or cell.thickness_cm
        area = area or cell.area_cm2
    if thickness is None or area is None:
        raise CellbenchError(f"{path}: give --thickness-cm and --area-cm2 (pellet geometry)")
    kind = getattr(args, "conductivity_kind", None) or "total"
    try:
        points, info = conductivity_from_spectra(
            load_spectra(path), thickness, area, kind=kind, electrodes=args.electrodes
        )
    except CellbenchError as exc:
        raise CellbenchError(f"{path}: {exc}") from None
    FITTED[str(path)] = {
        "impedance_model": ", ".join(dict.fromkeys(p.circuit for p in info)),
        "conductivity_kind": kind,
        "thickness_cm": thickness,
        "area_cm2": area,
        "run": path if is_run(path) else None,
    }
    return points


def geometry_from_run(args: argparse.Namespace) -> None:
    """With ``--run``, take the pellet thickness and area from the run's cell where the
    options do not give them (the electrolyte thickness of the build record for a cell
    without its own thickness)."""
    if getattr(args, "run", None) is None:
        return
    from cellbench.daq.loaders import is_run
    from cellbench.daq.store import open_run

    if not is_run(args.run):
        raise CellbenchError(f"--run {args.run}: not a cellbench run folder")
    cell = open_run(args.run).meta.cell
    if args.thickness_cm is None:
        args.thickness_cm = cell.thickness_cm or (
            cell.build.electrolyte_thickness_cm if cell.build else None
        )
    if args.area_cm2 is None:
        args.area_cm2 = cell.area_cm2


def _eis_band(text: str | None) -> tuple[tuple[float, float] | None, str | None]:
    """(max, min) frequency / Hz and the amplitude text of a protocol's EIS steps."""
    from cellbench.core import units

    if not text:
        return None, None
    try:
        steps = tomllib.loads(text).get("step", [])
    except tomllib.TOMLDecodeError:
        return None, None
    flat: list[dict[str, Any]] = []
    for s in steps:
        if isinstance(s, dict):
            flat.append(s)
            flat.extend(x for x in s.get("steps", []) if isinstance(x, dict))
    eis = [s for s in flat if s.get("type") == "eis"]
    freqs = []
    for s in eis:
        for key in ("start", "stop"):
            try:
                freqs.append(units.parse_frequency(s[key]))
            except (KeyError, units.UnitError):
                continue
    amplitude = str(eis[0]["amplitude"]) if eis and "amplitude" in eis[0] else None
    return ((max(freqs), min(freqs)) if freqs else None), amplitude


def run_context(path: Path) -> dict[str, Any]:
    """What a run folder tells the card: cell, band, amplitude, equilibration, stack pressure."""
    from cellbench.daq.loaders import is_run
    from cellbench.daq.store import open_run

    if not is_run(path):
        raise CellbenchError(f"--run {path}: not a cellbench run folder")
    run = open_run(path)
    out: dict[str, Any] = {"cell": run.meta.cell}
    band, amp = _eis_band(run.meta.protocol.get("text"))
    out["frequency_range_hertz"], out["amplitude"] = band, amp
    events = run.read("events")
    notes = []
    if "data" in events.columns:
        for d in events.filter(events["kind"] == "note")["data"].to_list():
            if d and '"equilibrium"' in d:
                notes.append(json.loads(d))
    accepted = [n for n in notes if n.get("equilibrium") is True]
    if notes:
        drifts = [n["drift_fraction"] for n in accepted if n.get("drift_fraction") is not None]
        out["equilibration"] = {
            "criterion_drift_max_fraction": notes[0].get("drift_max_fraction"),
            "criterion_temperature_drift_max_kelvin": notes[0].get("temperature_drift_max_kelvin"),
            "steps_equilibrated": len(accepted),
            "steps_not_equilibrated": sum(
                1 for n in notes if n.get("equilibrium") is False and "sweep_index" not in n
            ),
            "worst_accepted_drift_fraction": max(drifts) if drifts else None,
        }
    samples = run.read("samples")
    if "pressure_megapascal" in samples.columns:
        p = samples["pressure_megapascal"].drop_nulls().drop_nans()
        if p.len():
            out["stack_pressure_megapascal"] = float(p.mean())
            out["stack_pressure_source"] = f"gauge, mean of {p.len()} samples"
    return out


def print_cards(args: argparse.Namespace, datasets: list[dict[str, Any]]) -> int:
    """Build and print one card per data set (JSON with ``--json``)."""
    from cellbench.analysis.conductivity_card import card_text, conductivity_card
    from cellbench.cli.analyze_cycling import _print_json

    if args.relative_density is not None and not 0 < args.relative_density <= 1:
        raise CellbenchError(f"--relative-density must be in (0, 1], got {args.relative_density}")
    cards = []
    for data in datasets:
        fitted = FITTED.get(str(data.get("source")), {})
        run = args.run or fitted.get("run")
        ctx = run_context(run) if run is not None else {}
        cards.append(
            conductivity_card(
                data["fit"],
                alternatives=data.get("alternatives", ()),
                cell=ctx.get("cell"),
                thickness_cm=args.thickness_cm or fitted.get("thickness_cm"),
                area_cm2=args.area_cm2 or fitted.get("area_cm2"),
                material=args.material,
                relative_density=args.relative_density,
                fabrication_pressure_megapascal=args.fabrication_pressure_mpa,
                stack_pressure_megapascal=args.stack_pressure_mpa
                if args.stack_pressure_mpa is not None
                else ctx.get("stack_pressure_megapascal"),
                stack_pressure_source="given"
                if args.stack_pressure_mpa is not None
                else ctx.get("stack_pressure_source"),
                electrode_contacts=args.contacts,
                conductivity_kind=args.conductivity_kind or fitted.get("conductivity_kind"),
                impedance_model=args.impedance_model or fitted.get("impedance_model"),
                frequency_range_hertz=ctx.get("frequency_range_hertz"),
                amplitude=ctx.get("amplitude"),
                equilibration=ctx.get("equilibration"),
                source=data.get("source"),
            )
        )
    if args.json:
        _print_json(cards[0] if len(cards) == 1 else cards)
        return 0
    for k, card in enumerate(cards):
        if k:
            print()
        print(card_text(card))
    return 0
