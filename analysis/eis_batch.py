"""Fit many spectra (EIS every N cycles, or at each temperature) into one table of parameters.

Sweeps are fitted in order; each starts from the previous sweep's parameters (a warm start: a cell
changes little between two sweeps, so the fit converges in a few iterations and keeps the arcs
on the same circuit elements). When a warm start fits clearly worse than the previous sweep did,
the sweep is refitted from the automatic guesses and the better fit kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from cellbench.analysis.circuits import Circuit, parse_circuit
from cellbench.analysis.eis_fit import FitResult, fit_circuit
from cellbench.core.errors import CellbenchError

SWEEP_KEYS = ("channel", "sweep_index")
# per-sweep context carried into the parameter table: column -> how it is reduced over a sweep
CONTEXT = {
    "cycle_count": "first",
    "step_index": "first",
    "test_time_second": "min",
    "unix_time_second": "min",
    "temperature_celsius": "mean",
}


class BatchError(CellbenchError, ValueError):
    """A spectra frame that cannot be fitted (missing columns)."""


def iter_sweeps(spectra: pl.DataFrame) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(keys and context, frequency / Hz, complex Z / ohm) of each sweep, in sweep order.

    ``spectra`` has the ``spectra`` columns of :mod:`cellbench.core.schema`; a frame without
    ``sweep_index`` is one sweep.
    """
    need = ("frequency_hertz", "z_real_ohm", "z_imag_ohm")
    missing = [c for c in need if c not in spectra.columns]
    if missing:
        raise BatchError(f"spectra frame lacks columns {missing} (has {spectra.columns})")
    keys = [k for k in SWEEP_KEYS if k in spectra.columns]
    if not keys:
        groups: Sequence[tuple[tuple, pl.DataFrame]] = [((), spectra)]
    else:
        ordered = spectra.sort(keys, maintain_order=True)  # stable: points keep their order
        groups = list(ordered.group_by(keys, maintain_order=True))
    for key, df in groups:
        info: dict[str, Any] = dict(zip(keys, key, strict=True))
        for col, how in CONTEXT.items():
            if col in df.columns and df[col].null_count() < df.height:
                s = df[col].drop_nulls()
                info[col] = s[0] if how == "first" else (s.min() if how == "min" else s.mean())
        f = df["frequency_hertz"].to_numpy().astype(float)
        z_re = df["z_real_ohm"].to_numpy().astype(float)
        z = z_re + 1j * df["z_imag_ohm"].to_numpy().astype(float)
        yield info, f, z


def fit_spectra(
    spectra: pl.DataFrame,
    circuit: str | Circuit,
    *,
    weight: str = "modulus",
    warm_start: bool = True,
    fixed: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    results: list[FitResult] | None = None,
) -> pl.DataFrame:
    """Fit every sweep of ``spectra``; one row per sweep.

    Columns: the sweep keys (``channel``, ``sweep_index``) and context (``cycle_count``,
    ``test_time_second`` of the sweep's first point, ``temperature_celsius`` mean, ...) where
    present, then each parameter and ``<name>_stderr``, ``chi2``, ``reduced_chi2``,
    ``n_points``, ``success`` and ``poorly_determined`` (list of names). Pass a list as
    ``results`` to receive the :class:`FitResult` objects too.
    """
    c = parse_circuit(circuit)
    infos, fits = [], []
    previous: FitResult | None = None
    for info, f, z in iter_sweeps(spectra):
        res = warm_fit(
            c, f, z, previous if warm_start else None, fixed=fixed, bounds=bounds, weight=weight
        )
        previous = res
        infos.append(info)
        fits.append(res)
    if results is not None:
        results.extend(fits)
    return parameters_frame(infos, fits, c)


def warm_fit(
    circuit: str | Circuit,
    frequency_hz: np.ndarray,
    z: np.ndarray,
    previous: FitResult | None,
    **options: Any,
) -> FitResult:
    """Fit one sweep starting from ``previous`` (the sweep before, same circuit), or from the
    automatic guesses without one; a warm fit whose reduced chi2 is more than 4x the previous
    sweep's is refitted cold and the better fit kept. ``options`` go to :func:`fit_circuit`."""
    if previous is None or previous.circuit != parse_circuit(circuit).text:
        return fit_circuit(circuit, frequency_hz, z, **options)
    res = fit_circuit(circuit, frequency_hz, z, initial=previous.values, **options)
    if res.reduced_chi2 > 4 * previous.reduced_chi2:
        cold = fit_circuit(circuit, frequency_hz, z, **options)
        res = cold if cold.chi2 < res.chi2 else res
    return res


def parameters_frame(
    infos: Sequence[Mapping[str, Any]], fits: Sequence[FitResult], circuit: str | Circuit
) -> pl.DataFrame:
    """One row per sweep: its keys and context (``infos``, as from :func:`iter_sweeps`), each
    parameter of ``circuit`` and ``<name>_stderr``, ``chi2``, ``reduced_chi2``, ``n_points``,
    ``success`` and ``poorly_determined``."""
    names = parse_circuit(circuit).param_names
    rows = []
    for info, res in zip(infos, fits, strict=True):
        row = dict(info)
        for name in names:
            row[name] = res.values[name]
            row[f"{name}_stderr"] = res.stderr[name]
        row.update(
            chi2=res.chi2,
            reduced_chi2=res.reduced_chi2,
            n_points=res.n_points,
            success=res.success,
            poorly_determined=list(res.poorly_determined),
        )
        rows.append(row)
    schema_over = {"poorly_determined": pl.List(pl.String)}
    return pl.DataFrame(rows, schema_overrides=schema_over, infer_schema_length=None)


# --------------------------------------------------------------------------- choosing a circuit

#: Circuits tried when none is given: a series resistance and the interface arc, then what may
#: follow it at low frequency (a blocking electrode, semi-infinite ``W`` or finite-length ``Ws``
#: diffusion) or further arcs (bulk and grain boundary of a solid electrolyte).
CANDIDATES: tuple[str, ...] = (
    "R0-p(R1,CPE1)",
    "R0-p(R1,CPE1)-CPE2",
    "R0-p(R1,CPE1)-W1",
    "R0-p(R1,CPE1)-Ws1",
    "R0-p(R1,CPE1)-p(R2,CPE2)",
    "R0-p(R1,CPE1)-p(R2,CPE2)-CPE3",
    "R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)",
)

#: Relative standard error above which a resistance does not count as determined.
RESISTANCE_REL_STDERR = 0.10

CHOICE_RULE = (
    "lowest BIC among the candidates whose resistances are determined (relative standard error "
    "<= 10 %) and none of whose parameters is undetermined (standard error above the value); "
    "lowest BIC among those with determined resistances when none qualifies, lowest BIC overall "
    "when none of those does"
)


def undetermined(res: FitResult) -> list[str]:
    """Free parameters the data do not fix: standard error at least the value's magnitude
    (or not finite), so the value is consistent with zero and its digits mean nothing."""
    out = []
    for name in res.free:
        value, err = res.values[name], res.stderr[name]
        if not (np.isfinite(err) and np.isfinite(value)) or err >= abs(value):
            out.append(name)
    return out


def _candidate_row(res: FitResult) -> dict[str, Any]:
    resistances = [el.name for el in parse_circuit(res.circuit).elements if el.kind == "R"]
    rel = {
        n: (res.stderr[n] / abs(res.values[n]) if res.values[n] else np.inf) for n in resistances
    }
    fixed_r = all(np.isfinite(r) and r <= RESISTANCE_REL_STDERR for r in rel.values())
    return {
        "circuit": res.circuit,
        "bic": _finite(res.bic),
        "aic": _finite(res.aic),
        "chi2": _finite(res.chi2),
        "resistances_determined": bool(fixed_r),
        "undetermined": undetermined(res),
    }


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _candidates_for(f: np.ndarray, z: np.ndarray, candidates: Sequence[str]) -> list[str]:
    # Z'' > 0 at the top of the band: an inductance may explain it (leads), or not (an
    # instrument artefact); both forms compete then
    inductive = bool(np.any(z[np.argsort(-f)[:3]].imag > 0))
    return [f"L0-{c}" for c in candidates] + list(candidates) if inductive else list(candidates)


def _pick(rows: Sequence[dict[str, Any]]) -> int | None:
    """Index of the row :data:`CHOICE_RULE` picks (rows need ``bic``), None if there is none."""
    tiers = (
        [i for i, r in enumerate(rows) if r["resistances_determined"] and not r["undetermined"]],
        [i for i, r in enumerate(rows) if r["resistances_determined"]],
        list(range(len(rows))),
    )
    for pool in tiers:
        scored = [i for i in pool if rows[i]["bic"] is not None]
        if scored:
            return min(scored, key=lambda i: rows[i]["bic"])
    return None


def choose_circuit(
    frequency_hz: np.ndarray,
    z: np.ndarray,
    *,
    candidates: Sequence[str] = CANDIDATES,
    weight: str = "modulus",
    previous: dict[str, FitResult] | None = None,
) -> tuple[FitResult | None, dict[str, Any]]:
    """Fit every candidate to one sweep and pick one by :data:`CHOICE_RULE`.

    A circuit that wins BIC by splitting a resistance the data cannot split (two overlapping
    arcs), or by an element the data do not see (a Warburg coefficient consistent with zero),
    reads as precise values that are not; the simpler candidate that explains the data with
    determined values is the answer a user wants. Returns the chosen fit (None when no
    candidate can be fitted: too few points) and ``chosen_from``: ``criterion``, ``rule`` and
    ``candidates`` (circuit, bic, aic, chi2, resistances_determined, undetermined) of this sweep.

    ``previous``: pass the same dict for every sweep of a batch, in sweep order; each candidate
    then starts from its fit of the sweep before (:func:`warm_fit`), which it updates.
    """
    from cellbench.analysis.eis_fit import FitError

    fits: list[FitResult] = []
    rows: list[dict[str, Any]] = []
    for circuit in _candidates_for(frequency_hz, z, candidates):
        try:
            before = previous.get(circuit) if previous is not None else None
            res = warm_fit(circuit, frequency_hz, z, before, weight=weight)
        except FitError:  # too few points for this many parameters
            continue
        if previous is not None:
            previous[circuit] = res
        fits.append(res)
        rows.append(_candidate_row(res))
    best = _pick(rows)
    return (fits[best] if best is not None else None), {
        "criterion": "bic",
        "rule": CHOICE_RULE,
        "candidates": rows,
    }


def choose_circuit_for_sweeps(
    sweeps: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    candidates: Sequence[str] = CANDIDATES,
    weight: str = "modulus",
) -> tuple[list[FitResult] | None, dict[str, Any]]:
    """One circuit for a batch: every candidate fitted to every sweep (warm-started along the
    batch), ranked by the BIC summed over the sweeps; a candidate counts as determined only if
    it is on every sweep. Returns the chosen circuit's fit of each sweep (None when no candidate
    fits every sweep) and ``chosen_from`` as :func:`choose_circuit` with ``scope`` "all sweeps"
    and each candidate's ``bic`` the sum (``sweeps`` holds (frequency / Hz, Z / ohm) pairs)."""
    from cellbench.analysis.eis_fit import FitError

    if not sweeps:
        return None, {"criterion": "bic", "rule": CHOICE_RULE, "candidates": []}
    inductive = any(bool(np.any(z[np.argsort(-f)[:3]].imag > 0)) for f, z in sweeps if f.size)
    names = [f"L0-{c}" for c in candidates] + list(candidates) if inductive else list(candidates)
    all_fits: list[list[FitResult]] = []
    rows: list[dict[str, Any]] = []
    for circuit in names:
        fits: list[FitResult] = []
        try:
            for f, z in sweeps:
                fits.append(warm_fit(circuit, f, z, fits[-1] if fits else None, weight=weight))
        except FitError:
            continue
        per_sweep = [_candidate_row(r) for r in fits]
        bics = [r["bic"] for r in per_sweep]
        total = sum(bics) if all(b is not None for b in bics) else None
        all_fits.append(fits)
        rows.append(
            {
                "circuit": fits[0].circuit,
                "bic": total,
                "resistances_determined": all(r["resistances_determined"] for r in per_sweep),
                "undetermined": sorted({n for r in per_sweep for n in r["undetermined"]}),
            }
        )
    best = _pick(rows)
    return (all_fits[best] if best is not None else None), {
        "criterion": "bic",
        "scope": f"all {len(sweeps)} sweeps together (BIC summed)",
        "rule": CHOICE_RULE,
        "candidates": rows,
    }
