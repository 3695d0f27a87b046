"""Potentiostatic polarisation: electronic conductivity (Hebb-Wagner, ion-blocking electrodes)
and the Bruce-Vincent cation transference number (lithium | polymer electrolyte | lithium).

Both apply a constant voltage step ``dV`` and follow the current from its initial value ``I0`` to
a steady state ``Iss``.

**DC polarisation, electronic conductivity.** With ion-blocking electrodes (Au, stainless steel)
the ionic current stops once the electrolyte polarises; what flows at steady state is electronic:
``sigma_e = Iss L / (dV A)`` (S/cm) for a pellet of thickness L / cm and area A / cm2, and the
electronic resistance is ``R_e = dV / Iss``. The electronic transference number is ``t_e = Iss /
I0`` when ``I0`` is the total (ionic + electronic) current before polarisation; ``I0`` is taken
as ``dV / R_total`` when the impedance-derived total resistance is given (the first logged sample
is late for a fast pellet), otherwise as the first sample after the step edge.

**Bruce-Vincent (Evans, Vincent and Bruce, Polymer 28 (1987) 2324).** In a Li | polymer | Li cell
the anion current vanishes at steady state; corrected for the interfacial resistances before
(``R0``) and after (``Rss``) polarisation, measured by impedance::

    t+ = Iss (dV - I0 R0) / (I0 (dV - Iss Rss))

``I0`` is the initial current: measured (the first sample after the edge), or computed by
Ohm's law ``dV / (R_b + R0)`` from the impedance before polarisation (``r_bulk_ohm`` given),
which avoids the under-sampled spike. The standard error is propagated to first order from the
errors given for each input.

**Steady state.** ``Iss`` is the mean current over the last ``steady_fraction`` of the hold. It is
accepted as steady when a straight line through that window changes by less than
``steady_tolerance`` (relative) across the window; otherwise ``steady`` is False and the
result carries a warning (hold longer; polymer cells often need hours).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError


class TransportError(CellbenchError, ValueError):
    """Inputs a polarisation analysis cannot use."""


@dataclass(frozen=True)
class Polarisation:
    """Currents of one potentiostatic hold. Currents / A (sign as logged), voltage / V."""

    voltage_step_volt: float
    initial_current_ampere: float
    steady_current_ampere: float
    steady_current_stderr_ampere: float
    steady: bool
    drift_fraction: float  # relative change of the fitted line across the steady window
    hold_second: float
    n_points: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite_positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise TransportError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def polarisation_currents(
    time_second: np.ndarray,
    current_ampere: np.ndarray,
    voltage_step_volt: float,
    *,
    steady_fraction: float = 0.1,
    steady_tolerance: float = 0.02,
) -> Polarisation:
    """I0 (the first sample), Iss (the mean of the last ``steady_fraction`` of the hold) and
    whether the current is steady there (module doc). ``time_second`` starts at the voltage
    step (or anywhere before the first sample of the hold); samples must be in time order."""
    t = np.asarray(time_second, dtype=float)
    i = np.asarray(current_ampere, dtype=float)
    if t.shape != i.shape or t.ndim != 1:
        raise TransportError("time and current must be 1-D arrays of equal length")
    ok = np.isfinite(t) & np.isfinite(i)
    t, i = t[ok], i[ok]
    if t.size < 10:
        raise TransportError(f"need at least 10 finite samples of the hold, got {t.size}")
    if np.any(np.diff(t) < 0):
        raise TransportError("samples must be in time order")
    if not 0 < steady_fraction <= 0.5:
        raise TransportError(f"steady_fraction must be in (0, 0.5], got {steady_fraction!r}")
    dv = float(voltage_step_volt)
    if not (math.isfinite(dv) and dv != 0):
        raise TransportError(f"voltage step must be a finite non-zero voltage, got {dv!r}")
    t_window = t[-1] - steady_fraction * (t[-1] - t[0])
    w = t >= t_window
    if w.sum() < 3:
        w = np.zeros_like(w)
        w[-3:] = True
    tw, iw = t[w], i[w]
    iss = float(np.mean(iw))
    se = float(np.std(iw, ddof=1) / math.sqrt(iw.size))
    slope = float(np.polyfit(tw - tw[0], iw, 1)[0]) if np.ptp(tw) > 0 else 0.0
    drift = abs(slope * float(np.ptp(tw)) / iss) if iss != 0 else math.inf
    return Polarisation(
        voltage_step_volt=dv,
        initial_current_ampere=float(i[0]),
        steady_current_ampere=iss,
        steady_current_stderr_ampere=se,
        steady=drift <= steady_tolerance,
        drift_fraction=drift,
        hold_second=float(t[-1] - t[0]),
        n_points=int(t.size),
    )


def hold_from_samples(
    samples: pl.DataFrame,
    *,
    step_index: int | None = None,
    min_current_ampere: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(time / s, current / A, voltage step / V) of a potentiostatic hold in a ``samples``
    frame: the rows of ``step_index`` (default: the longest run of one ``step_index``, or the
    whole frame without that column). The voltage step is the median voltage of the hold minus
    the last voltage before it (0 when the hold is the first row)."""
    need = ("test_time_second", "voltage_volt", "current_ampere")
    missing = [c for c in need if c not in samples.columns]
    if missing:
        raise TransportError(f"missing column(s) {missing}; have {samples.columns}")
    df = samples.select(*need, *(["step_index"] if "step_index" in samples.columns else []))
    if "step_index" in df.columns:
        steps = df["step_index"].to_numpy()
        if step_index is None:
            change = np.flatnonzero(np.diff(steps) != 0) + 1
            bounds = np.concatenate([[0], change, [steps.size]])
            k = int(np.argmax(np.diff(bounds)))
            lo, hi = int(bounds[k]), int(bounds[k + 1])
        else:
            rows = np.flatnonzero(steps == step_index)
            if rows.size == 0:
                raise TransportError(f"no samples of step_index {step_index}")
            lo, hi = int(rows[0]), int(rows[-1]) + 1
    else:
        lo, hi = 0, df.height
    t = df["test_time_second"].to_numpy()
    v = df["voltage_volt"].to_numpy()
    i = df["current_ampere"].to_numpy()
    before = float(v[lo - 1]) if lo > 0 else 0.0
    dv = float(np.median(v[lo:hi])) - before
    sel = np.abs(i[lo:hi]) >= min_current_ampere
    return t[lo:hi][sel], i[lo:hi][sel], dv


@dataclass(frozen=True)
class ElectronicConductivity:
    """Hebb-Wagner DC polarisation result. S/cm, ohm, fractions."""

    sigma_electronic_siemens_per_centimeter: float
    sigma_electronic_stderr_siemens_per_centimeter: float
    r_electronic_ohm: float
    electronic_transference_number: float
    ionic_transference_number: float
    initial_current_source: str  # "impedance" or "measured"
    polarisation: Polarisation
    thickness_cm: float
    area_cm2: float
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in self.__dataclass_fields__
            if k not in ("polarisation", "warnings")
        }
        out["polarisation"] = self.polarisation.to_dict()
        out["warnings"] = list(self.warnings)
        return out


def electronic_conductivity(
    pol: Polarisation,
    thickness_cm: float,
    area_cm2: float,
    *,
    r_total_ohm: float | None = None,
) -> ElectronicConductivity:
    """sigma_e = Iss L / (dV A) from a hold between ion-blocking electrodes (module doc);
    ``r_total_ohm`` (ionic, from impedance) gives I0 = dV / R_total for the transference
    numbers."""
    thickness_cm = _finite_positive("thickness_cm", thickness_cm)
    area_cm2 = _finite_positive("area_cm2", area_cm2)
    dv, iss = abs(pol.voltage_step_volt), abs(pol.steady_current_ampere)
    if iss == 0:
        raise TransportError("the steady-state current is zero: below the instrument's range?")
    if r_total_ohm is not None:
        i0, source = dv / _finite_positive("r_total_ohm", r_total_ohm), "impedance"
    else:
        i0, source = abs(pol.initial_current_ampere), "measured"
    sigma = iss * thickness_cm / (dv * area_cm2)
    warnings = []
    if not pol.steady:
        warnings.append(
            f"current still drifting {100 * pol.drift_fraction:.1f} % across the steady window: "
            "sigma_e is an upper bound; hold longer"
        )
    t_e = iss / i0 if i0 > 0 else math.nan
    if t_e > 1:
        warnings.append("Iss exceeds I0: the initial current is under-sampled or not ionic")
    return ElectronicConductivity(
        sigma_electronic_siemens_per_centimeter=sigma,
        sigma_electronic_stderr_siemens_per_centimeter=sigma
        * pol.steady_current_stderr_ampere
        / iss,
        r_electronic_ohm=dv / iss,
        electronic_transference_number=t_e,
        ionic_transference_number=1 - t_e,
        initial_current_source=source,
        polarisation=pol,
        thickness_cm=thickness_cm,
        area_cm2=area_cm2,
        warnings=tuple(warnings),
    )


def bruce_vincent_value(
    voltage_step_volt: float,
    i0_ampere: float,
    iss_ampere: float,
    r0_ohm: float,
    rss_ohm: float,
) -> float:
    """t+ = Iss (dV - I0 R0) / (I0 (dV - Iss Rss)); magnitudes of V and I are used."""
    dv, i0, iss = abs(voltage_step_volt), abs(i0_ampere), abs(iss_ampere)
    den = i0 * (dv - iss * rss_ohm)
    if den == 0:
        return math.nan
    return iss * (dv - i0 * r0_ohm) / den


@dataclass(frozen=True)
class TransferenceNumber:
    """Bruce-Vincent t+ with its inputs; ``current_ratio`` is the uncorrected Iss / I0."""

    transference_number: float
    transference_number_stderr: float
    current_ratio: float
    voltage_step_volt: float
    initial_current_ampere: float
    initial_current_source: str
    steady_current_ampere: float
    r0_interface_ohm: float
    rss_interface_ohm: float
    steady: bool
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out


def bruce_vincent(
    pol: Polarisation,
    r0_interface_ohm: float,
    rss_interface_ohm: float,
    *,
    r_bulk_ohm: float | None = None,
    r0_stderr_ohm: float = 0.0,
    rss_stderr_ohm: float = 0.0,
    i0_stderr_ampere: float = 0.0,
) -> TransferenceNumber:
    """Bruce-Vincent transference number from a polarisation and the interfacial resistances
    before (``r0_interface_ohm``) and after (``rss_interface_ohm``) it, both / ohm (the sum of
    the two interfaces of the symmetric cell, as the impedance fit gives them).

    With ``r_bulk_ohm`` (impedance before polarisation) I0 = dV / (R_b + R0); otherwise the
    first sample of the hold. The standard error combines the given errors of R0, Rss, I0 and
    the standard error of Iss (first-order propagation, numerical partial derivatives).
    """
    for name, v in (
        ("r0_interface_ohm", r0_interface_ohm),
        ("rss_interface_ohm", rss_interface_ohm),
    ):
        if not (math.isfinite(v) and v >= 0):
            raise TransportError(f"{name} must be a finite number >= 0, got {v!r}")
    dv = abs(pol.voltage_step_volt)
    if r_bulk_ohm is not None:
        i0 = dv / (_finite_positive("r_bulk_ohm", r_bulk_ohm) + r0_interface_ohm)
        source = "impedance"
    else:
        i0, source = abs(pol.initial_current_ampere), "measured"
    iss = abs(pol.steady_current_ampere)
    x = np.array([dv, i0, iss, r0_interface_ohm, rss_interface_ohm])
    se = np.array(
        [0.0, i0_stderr_ampere, pol.steady_current_stderr_ampere, r0_stderr_ohm, rss_stderr_ohm]
    )
    t_plus = bruce_vincent_value(*x)
    var = 0.0
    for k in range(1, 5):
        if se[k] == 0:
            continue
        h = 1e-6 * (abs(x[k]) or 1.0)
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        d = (bruce_vincent_value(*xp) - bruce_vincent_value(*xm)) / (2 * h)
        var += (d * se[k]) ** 2
    warnings = []
    if not pol.steady:
        warnings.append(
            f"current still drifting {100 * pol.drift_fraction:.1f} % across the steady window; "
            "hold longer"
        )
    if dv > 0.02:
        warnings.append(
            f"dV = {1000 * dv:.0f} mV: the method assumes a small step (about 10 mV) so that "
            "the concentration gradient stays linear"
        )
    if not 0 <= t_plus <= 1:
        warnings.append(f"t+ = {t_plus:.3g} lies outside 0..1: check R0, Rss and I0")
    if i0 * r0_interface_ohm >= dv:
        warnings.append("I0 R0 >= dV: the initial current and R0 are inconsistent")
    return TransferenceNumber(
        transference_number=t_plus,
        transference_number_stderr=math.sqrt(var),
        current_ratio=iss / i0 if i0 > 0 else math.nan,
        voltage_step_volt=dv,
        initial_current_ampere=i0,
        initial_current_source=source,
        steady_current_ampere=iss,
        r0_interface_ohm=float(r0_interface_ohm),
        rss_interface_ohm=float(rss_interface_ohm),
        steady=pol.steady,
        warnings=tuple(warnings),
    )
