"""Complex non-linear least-squares fitting of equivalent circuits to impedance spectra.

The residual vector stacks real and imaginary parts, each divided by its standard deviation
``sigma``::

    r = [ (Z'_model - Z'_data) / sigma' ,  (Z''_model - Z''_data) / sigma'' ]

with the weighting

- ``unit``:         sigma' = sigma'' = 1 ohm (the default of impedance.py and of ``curve_fit``);
- ``modulus``:      sigma' = sigma'' = |Z_data| (impedance.py's ``weight_by_modulus=True``);
- ``proportional``: sigma' = |Z'_data|, sigma'' = |Z''_data| (Boukamp), each floored at
  1e-3 |Z_data| so that points where a component crosses zero do not dominate.

``chi2 = sum(r**2)`` is the quantity minimised; with the same weighting it is the same number that
impedance.py's fit minimises, so the two are directly comparable. ``reduced_chi2 = chi2 / (2N - k)``
for N frequencies and k free parameters. ``aic = 2N ln(chi2 / 2N) + 2k`` and
``bic = 2N ln(chi2 / 2N) + k ln(2N)`` (Gaussian errors of unknown common variance).

Each parameter is fitted in a transformed coordinate so that the optimiser sees numbers of order
one: ln(p - lo) when only a lower bound is set (every resistance, capacitance, inductance, ... is
positive by default), a logit between two finite bounds (CPE exponents in [0, 1]), p itself when
unbounded. So R ~ 1e9 ohm beside C ~ 1e-12 F and L ~ 1e-7 H converge from the same start. The
Jacobian is analytic (:mod:`cellbench.analysis.circuits`) and MINPACK's Levenberg-Marquardt does
the minimisation. Standard errors come from the covariance ``s^2 (J^T J)^-1`` in the natural
parameters with ``s^2 = reduced_chi2`` (as ``curve_fit`` with ``absolute_sigma=False``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from cellbench.analysis.circuits import Circuit, CircuitError, parse_circuit
from cellbench.core.errors import CellbenchError

WEIGHTS = ("unit", "proportional", "modulus")
POORLY_DETERMINED_REL_STDERR = 0.1
FTOL = 1e-6
U_SPAN = 12.0  # ln units: a factor 1.6e5 either way from the start
MAX_NFEV_PER_PARAM = 50
_CHI2_3DOF_99 = 11.345  # scipy.stats.chi2.ppf(0.99, 3)


class FitError(CellbenchError, ValueError):
    """Input that a fit cannot run on (too few points, bad weights, bad bounds)."""


# ----------------------------------------------------------------------------------- data


def clean_spectrum(
    frequency_hz, z, *, drop_positive_imag: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Finite points with f > 0, sorted high to low; optionally without points where Z'' > 0."""
    f = np.asarray(frequency_hz, dtype=float).ravel()
    zz = np.asarray(z, dtype=complex).ravel()
    if f.shape != zz.shape:
        raise FitError(f"frequency ({f.size}) and impedance ({zz.size}) differ in length")
    ok = np.isfinite(f) & np.isfinite(zz.real) & np.isfinite(zz.imag) & (f > 0)
    if drop_positive_imag:
        ok &= zz.imag <= 0
    f, zz = f[ok], zz[ok]
    order = np.argsort(-f, kind="stable")
    return f[order], zz[order]


def sigmas(z: np.ndarray, weight: str) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations (sigma', sigma'') / ohm of real and imaginary parts (module doc)."""
    if weight == "unit":
        one = np.ones(z.size)
        return one, one
    mag = np.abs(z)
    if weight == "modulus":
        return mag, mag
    if weight == "proportional":
        floor = 1e-3 * mag
        return np.maximum(np.abs(z.real), floor), np.maximum(np.abs(z.imag), floor)
    raise FitError(f"weight {weight!r} is not one of {WEIGHTS}")


# ----------------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class _Transform:
    """Maps a fitted coordinate u to the parameter p = lo + exp(u), hi - exp(u), logistic or u."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self):
        lo_f, hi_f = np.isfinite(self.lo), np.isfinite(self.hi)
        object.__setattr__(self, "kind_lower", lo_f & ~hi_f)
        object.__setattr__(self, "kind_upper", ~lo_f & hi_f)
        object.__setattr__(self, "kind_both", lo_f & hi_f)

    def to_p(self, u: np.ndarray) -> np.ndarray:
        p = u.copy()
        m = self.kind_lower
        p[m] = self.lo[m] + np.exp(np.minimum(u[m], 700))
        m = self.kind_upper
        p[m] = self.hi[m] - np.exp(np.minimum(u[m], 700))
        m = self.kind_both
        p[m] = self.lo[m] + (self.hi[m] - self.lo[m]) / (1 + np.exp(-np.clip(u[m], -700, 700)))
        return p

    def dp_du(self, u: np.ndarray, p: np.ndarray) -> np.ndarray:
        d = np.ones_like(u)
        m = self.kind_lower
        d[m] = p[m] - self.lo[m]
        m = self.kind_upper
        d[m] = -(self.hi[m] - p[m])
        m = self.kind_both
        d[m] = (p[m] - self.lo[m]) * (self.hi[m] - p[m]) / (self.hi[m] - self.lo[m])
        return d

    def to_u(self, p: np.ndarray) -> np.ndarray:
        # keep starting values strictly inside their bounds
        span = np.where(self.kind_both, self.hi - self.lo, np.abs(p) + 1.0)
        eps = 1e-9 * np.where(np.isfinite(span), span, 1.0)
        p = np.clip(p, np.where(np.isfinite(self.lo), self.lo + eps, -np.inf), np.inf)
        p = np.clip(p, -np.inf, np.where(np.isfinite(self.hi), self.hi - eps, np.inf))
        u = p.copy()
        m = self.kind_lower
        u[m] = np.log(p[m] - self.lo[m])
        m = self.kind_upper
        u[m] = np.log(self.hi[m] - p[m])
        m = self.kind_both
        x = (p[m] - self.lo[m]) / (self.hi[m] - self.lo[m])
        u[m] = np.log(x / (1 - x))
        return u


def default_bounds(circuit: Circuit) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of every parameter: exponents in [0, 1], everything else > 0."""
    lo = np.zeros(len(circuit.param_names))
    hi = np.where(circuit.is_exponent, 1.0, np.inf)
    return lo, hi


# ----------------------------------------------------------------------------------- result


@dataclass
class FitResult:
    """Outcome of one fit. Parameter dicts are keyed by name (``"R0"``, ``"CPE1.Q"``).

    ``stderr`` is ``inf`` for a parameter the data do not constrain; fixed parameters have stderr
    0 and are absent from ``covariance`` (which follows ``free`` order).
    """

    circuit: str
    values: dict[str, float]
    stderr: dict[str, float]
    free: list[str]
    fixed: dict[str, float]
    covariance: np.ndarray
    chi2: float
    reduced_chi2: float
    aic: float
    bic: float
    weight: str
    n_points: int
    frequency_hz: np.ndarray
    z_data: np.ndarray
    z_fit: np.ndarray
    residuals: np.ndarray  # weighted residual vector r (2N,), real parts then imaginary parts
    success: bool
    message: str
    nfev: int
    initial: dict[str, float]
    starts: int = 1
    poorly_determined: list[str] = field(default_factory=list)
    above_band: bool = False  # started with an arc above the measured band
    # pseudo-inverse covariance and the undetermined directions (rows, in ``free`` order): a
    # combination of parameters orthogonal to every such direction has a finite variance
    covariance_pinv: np.ndarray | None = None
    null_space: np.ndarray | None = None

    @property
    def correlation(self) -> np.ndarray:
        sd = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(sd, sd)

    @property
    def relative_residuals(self) -> np.ndarray:
        """(Z_fit - Z_data) / |Z_data|, complex."""
        return (self.z_fit - self.z_data) / np.abs(self.z_data)

    @property
    def dof(self) -> int:
        return 2 * self.n_points - len(self.free)

    def combined(self, names: Sequence[str]) -> tuple[float, float]:
        """Sum of several parameters and its standard error (with their covariances)."""
        value = float(sum(self.values[n] for n in names))
        idx = [self.free.index(n) for n in names if n in self.free]
        if not idx:
            return value, 0.0
        if all(math.isfinite(self.stderr[self.free[i]]) for i in idx):
            var = float(self.covariance[np.ix_(idx, idx)].sum())
            return value, math.sqrt(max(var, 0.0))
        if self.covariance_pinv is None or self.null_space is None:
            return value, math.inf
        a = np.zeros(len(self.free))
        a[idx] = [abs(self.values[self.free[i]]) or 1.0 for i in idx]  # relative units
        if self.null_space.size and np.max(np.abs(self.null_space @ a)) > 1e-3 * np.linalg.norm(a):
            return value, math.inf
        a = np.zeros(len(self.free))
        a[idx] = 1.0
        var = float(a @ self.covariance_pinv @ a)
        return value, math.sqrt(max(var, 0.0))

    def predict(self, frequency_hz) -> np.ndarray:
        """Z / ohm of the fitted circuit at ``frequency_hz``."""
        c = parse_circuit(self.circuit)
        return c.impedance(self.values, frequency_hz)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (non-finite numbers become None)."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "circuit": self.circuit,
            "parameters": {
                n: {"value": num(v), "stderr": num(self.stderr[n]), "fixed": n in self.fixed}
                for n, v in self.values.items()
            },
            "chi2": num(self.chi2),
            "reduced_chi2": num(self.reduced_chi2),
            "aic": num(self.aic),
            "bic": num(self.bic),
            "weight": self.weight,
            "n_points": self.n_points,
            "success": self.success,
            "poorly_determined": list(self.poorly_determined),
            "correlation": {
                "parameters": list(self.free),
                "matrix": [[num(x) for x in row] for row in self.correlation.tolist()],
            },
        }


# ----------------------------------------------------------------------------------- fitting


def _as_bounds(circuit: Circuit, bounds: Mapping[str, tuple[float, float]] | None):
    lo, hi = default_bounds(circuit)
    for name, (b_lo, b_hi) in (bounds or {}).items():
        if name not in circuit.param_names:
            raise CircuitError(f"bounds: {name!r} is not a parameter of {circuit.text!r}")
        i = circuit.param_names.index(name)
        lo[i] = -np.inf if b_lo is None else float(b_lo)
        hi[i] = np.inf if b_hi is None else float(b_hi)
        if not lo[i] < hi[i]:
            raise FitError(f"bounds of {name!r}: lower {lo[i]} must be below upper {hi[i]}")
    return lo, hi


class _Problem:
    """Residuals and Jacobian in the fitted coordinates, with the last evaluation cached."""

    def __init__(self, circuit, f, z, weight, free_idx, p_full, transform):
        self.c, self.f, self.z = circuit, f, z
        s_re, s_im = sigmas(z, weight)
        self.w = np.concatenate((1 / s_re, 1 / s_im))
        self.free_idx = free_idx
        self.p_full = p_full.copy()
        self.tr = transform
        self._key: bytes | None = None
        self._u_lo = np.full(free_idx.size, -np.inf)
        self._u_hi = np.full(free_idx.size, np.inf)
        self._penalty = 1e6 * float(np.max(np.abs(z) * np.maximum(1 / s_re, 1 / s_im)))

    def window(self, u0: np.ndarray, span: float) -> None:
        """Confine log-scaled parameters to exp(+-span) around the start: a parameter the data do
        not need (an arc above the band) would otherwise drift towards 0 or infinity for hundreds
        of iterations, each lowering chi2 by nothing that matters."""
        logs = self.tr.kind_lower | self.tr.kind_upper
        self._u_lo = np.where(logs, u0 - span, -np.inf)
        self._u_hi = np.where(logs, u0 + span, np.inf)

    def _eval(self, u):
        key = u.tobytes()
        if key != self._key:
            clipped = (u < self._u_lo) | (u > self._u_hi)
            u = np.clip(u, self._u_lo, self._u_hi)
            p = self.p_full.copy()
            p[self.free_idx] = self.tr.to_p(u)
            with np.errstate(all="ignore"):
                zm, jac = self.c.impedance_and_jacobian(p, self.f)
                d = zm - self.z
                self._r = np.concatenate((d.real, d.imag)) * self.w
                jf = jac[self.free_idx]
                dpu = self.tr.dp_du(u, p[self.free_idx])
                dpu[clipped] = 0.0
                self._jnat = np.hstack((jf.real, jf.imag)).T * self.w[:, None]
                self._ju = self._jnat * dpu[None, :]
            bad = ~np.isfinite(self._r)
            if bad.any():  # parameters so extreme the model overflows: a large, flat penalty
                self._r = np.where(bad, self._penalty, self._r)
                self._ju = np.where(np.isfinite(self._ju), self._ju, 0.0)
                self._ju[bad] = 0.0
            elif not np.all(np.isfinite(self._ju)):
                self._ju = np.where(np.isfinite(self._ju), self._ju, 0.0)
            self._p = p
            self._zm = zm
            self._key = key
        return self

    def residuals(self, u):
        return self._eval(u)._r

    def jacobian(self, u):
        return self._eval(u)._ju


def _covariance(
    jnat: np.ndarray, p_free: np.ndarray, s2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """s2 (J^T J)^-1, computed on unit-norm columns (so R ~ 1e9 beside C ~ 1e-12 is well
    conditioned); parameters in a direction the data do not fix at all get inf."""
    k = jnat.shape[1]
    cov = np.full((k, k), np.inf)
    finite = np.zeros((k, k))
    if k == 0:
        return cov, finite, np.zeros((0, 0))
    norms = np.linalg.norm(jnat, axis=0)
    # a parameter the model no longer depends on (an arc shrunk to nothing) is not determined;
    # sensitivities are compared per relative change of each parameter, so units do not matter
    sens = norms * np.where(p_free != 0, np.abs(p_free), 1.0)
    live = sens > 1e-10 * sens.max() if sens.max() > 0 else np.zeros(k, bool)
    if not live.any():
        return cov, finite, np.eye(k)
    js = jnat[:, live] / norms[live]
    _, sv, vt = np.linalg.svd(js, full_matrices=False)
    tol = sv[0] * max(js.shape) * np.finfo(float).eps * 10
    good = sv > tol
    sub = (vt[good].T / sv[good] ** 2) @ vt[good] * s2 / np.outer(norms[live], norms[live])
    finite[np.ix_(live, live)] = sub
    # directions the data do not fix, in parameter units: dead parameters and exact degeneracies
    # (two resistances in series); a combination orthogonal to them is still determined
    null_rows = [np.eye(k)[i] for i in np.flatnonzero(~live)]
    for v in vt[~good]:
        row = np.zeros(k)
        row[live] = v / norms[live]
        null_rows.append(row / np.linalg.norm(row))
    null = np.array(null_rows) if null_rows else np.zeros((0, k))
    if not good.all():
        part = np.any(np.abs(vt[~good]) > 0.1, axis=0)
        sub[part, :] = np.inf
        sub[:, part] = np.inf
    cov[np.ix_(live, live)] = sub
    return cov, finite, null


_CONTROLLER: Any = None


def single_threaded_blas():
    """A context in which BLAS/LAPACK use one thread.

    A fit's matrices are small (a few hundred by a few dozen); a multi-threaded BLAS spends more
    time waking threads than computing: 8x slower per fit on a busy two-core machine. Many
    spectra are better spread over processes. The controller is built on first use (it loads
    the BLAS libraries' handles), not at import.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def fit_circuit(
    circuit: str | Circuit,
    frequency_hz,
    z,
    *,
    initial: Mapping[str, float] | None = None,
    fixed: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    weight: str = "modulus",
    multistart: bool = True,
    max_starts: int = 8,
    poorly_determined_rel_stderr: float = POORLY_DETERMINED_REL_STDERR,
) -> FitResult:
    """Fit ``circuit`` to one spectrum; no initial guess is needed.

    ``frequency_hz`` / Hz and complex ``z`` / ohm (Z'' negative for capacitive); non-finite
    points are dropped. ``weight`` is ``modulus`` (default: residuals relative to |Z|, right for
    the proportional noise of impedance analysers), ``unit`` or ``proportional`` (module doc).
    ``initial`` may give some or all starting values (the rest are guessed from the data);
    ``fixed`` holds parameters at given values; ``bounds`` maps names to (lower, upper), None for
    open (defaults: > 0, exponents in [0, 1]).

    Without a complete ``initial``, starts come from :func:`cellbench.analysis.eis_guess.
    ranked_starts`; further starts are tried (``multistart``, up to ``max_starts``) while the
    relative residual stays above the level a circuit-free DRT reaches (the noise), and the
    lowest chi2 is kept. When the data do not show one of the circuit's arcs, a start with that
    arc above the band is also fitted, and kept unless the best fit is better by more than the
    99 % point of chi-square with 3 degrees of freedom (in units of the noise variance).
    Parameters whose relative standard error exceeds ``poorly_determined_rel_stderr`` (10 %)
    are listed in ``poorly_determined``; :meth:`FitResult.combined` gives the value and
    standard error of a sum (such as R_bulk + R_gb) that is determined when its parts are not.
    """
    with single_threaded_blas():
        return _fit_circuit(
            circuit,
            frequency_hz,
            z,
            initial=initial,
            fixed=fixed,
            bounds=bounds,
            weight=weight,
            multistart=multistart,
            max_starts=max_starts,
            poorly_determined_rel_stderr=poorly_determined_rel_stderr,
        )


def _fit_circuit(
    circuit,
    frequency_hz,
    z,
    *,
    initial,
    fixed,
    bounds,
    weight,
    multistart,
    max_starts,
    poorly_determined_rel_stderr,
) -> FitResult:
    c = parse_circuit(circuit)
    if weight not in WEIGHTS:
        raise FitError(f"weight {weight!r} is not one of {WEIGHTS}")
    f, zz = clean_spectrum(frequency_hz, z)
    fixed = dict(fixed or {})
    for name in (*fixed, *(initial or {})):
        if name not in c.param_names:
            raise CircuitError(
                f"{name!r} is not a parameter of {c.text!r}; parameters: {list(c.param_names)}"
            )
    n_free = len(c.param_names) - len(fixed)
    if 2 * f.size <= n_free:
        raise FitError(
            f"{f.size} points give {2 * f.size} residuals, not enough for {n_free} free parameters"
        )
    lo, hi = _as_bounds(c, bounds)

    given = dict(initial or {})
    noise_floor = 0.0
    from cellbench.analysis.eis_guess import Start

    auto = not all(n in given or n in fixed for n in c.param_names)
    if not auto:
        starts = [Start(given, 0.0, False)]
        multistart = False
    else:
        from cellbench.analysis.drt import drt
        from cellbench.analysis.eis_guess import ranked_starts

        d = drt(f, zz)
        # the DRT's residual is the noise level a good circuit reaches, unless the DRT itself
        # cannot follow the data (inductive loops, negative arcs): then keep trying starts
        noise_floor = d.residual_rms if d.residual_rms < 0.02 else 0.0
        starts = [
            s if not given else Start({**s.params, **given}, s.residual, s.above_band, s.held)
            for s in ranked_starts(c, f, zz, drt_result=d)
        ]
        # The data may not show every arc of the circuit. Where a start that puts the missing
        # arc above the band explains them almost as well as the best, it is fitted second.
        if multistart and len(starts) > 1 and not starts[0].above_band:
            for k, s in enumerate(starts[1:], start=1):
                if s.above_band and s.residual <= 3 * starts[0].residual:
                    starts.insert(1, starts.pop(k))
                    break
        if weight != "modulus":
            # Unit and proportional weighting let a few points dominate and have more false
            # minima; the modulus-weighted fit is the first start for them.
            pre = _fit_circuit(
                c,
                f,
                zz,
                initial=initial,
                fixed=fixed,
                bounds=bounds,
                weight="modulus",
                multistart=multistart,
                max_starts=max_starts,
                poorly_determined_rel_stderr=poorly_determined_rel_stderr,
            )
            starts.insert(0, Start(pre.values, 0.0, False))

    def fit(params, hold=(), optimize=True):
        held = {**fixed, **{n: params[n] for n in hold if n not in fixed}}
        return _fit_once(
            c, f, zz, params, held, fixed, weight, lo, hi, poorly_determined_rel_stderr, optimize
        )

    def fit_start(s: Start) -> FitResult:
        if not s.above_band or not s.held:
            return fit(s.params)
        # First with the unseen arc's time constant held above the band, then free. The free
        # fit may slide that arc into the band to fit noise; that is only accepted when it is
        # significantly better (_prefer_alternative).
        held = fit(s.params, hold=s.held)
        free = fit(held.values)
        if not _prefer_alternative(held, free):
            return free  # the data want that arc in the band
        out = fit(held.values, optimize=False)
        out.initial = held.initial
        out.above_band = True
        return out

    arc_params = {c.param_names[i] for block in _rq_blocks(c) for i in block if i is not None}
    results: list[FitResult] = []
    for s in starts:
        results.append(fit_start(s))
        if not multistart or len(results) >= max_starts:
            break
        best = min(results, key=lambda r: r.chi2)
        good = _rms_relative(best) <= 1.08 * noise_floor + 1e-6
        # a fit whose arcs the data do not fix may have put an unseen arc in the band
        unsure = not good or bool(set(best.poorly_determined) & arc_params)
        if len(results) == 1 and len(starts) > 1 and starts[1].above_band and unsure:
            continue
        if good:
            break
        # a circuit that cannot reach the noise floor: stop once two more starts gained nothing
        stalled = len(results) >= 3 and results[-1].chi2 >= 0.999 * best.chi2
        if stalled and min(r.chi2 for r in results[:-2]) <= 1.001 * best.chi2:
            break
    best = min(results, key=lambda r: r.chi2)
    if auto and multistart and (noise_floor == 0 or _rms_relative(best) > 3 * noise_floor):
        from cellbench.analysis.eis_guess import fallback_starts

        for params in fallback_starts(c, f, zz):
            results.append(fit({**params, **given}))
        best = min(results, key=lambda r: r.chi2)
    alt = next((r for r in results if r.above_band), None)
    if alt is not None and _prefer_alternative(alt, best):
        best = alt
    best.starts = len(results)
    return best


def _prefer_alternative(alt: FitResult, best: FitResult) -> bool:
    """Keep the start with an arc above the band unless the best fit is significantly better:
    moving that arc into the band adds up to three effective parameters, so its chi2 drop (in
    units of the noise variance) is compared with the 99 % point of chi-square with 3 degrees of
    freedom (11.3). Fitting noise with a spare arc is not evidence for it."""
    if alt is best:
        return True
    s2 = best.chi2 / max(best.dof, 1)
    return alt.chi2 - best.chi2 <= _CHI2_3DOF_99 * s2


def _rq_blocks(c: Circuit) -> list[tuple[int, int, int | None]]:
    """Top-level ``p(R, C)`` / ``p(R, CPE)`` blocks as (index of R, of C or Q, of n or None)."""
    names = c.param_names
    out = []
    for r, cap in c.rc_blocks:
        if cap.kind == "CPE":
            q, n = names.index(f"{cap.name}.Q"), names.index(f"{cap.name}.n")
            out.append((names.index(r.name), q, n))
        else:
            out.append((names.index(r.name), names.index(cap.name), None))
    return out


def canonical_arc_order(
    c: Circuit, p: np.ndarray, *, movable: set[int] | None = None
) -> np.ndarray | None:
    """Parameters with like arc blocks (all ``p(R,CPE)``, or all ``p(R,C)``) relabelled so that
    their time constants grow along the circuit (high frequency first, the convention the guesses
    and readers of a circuit assume). Two such blocks can swap values without changing Z; without
    a rule, which block holds which arc would be arbitrary. None when nothing moves (or a block
    has a fixed parameter)."""
    blocks = _rq_blocks(c)
    changed = False
    out = p.copy()
    for with_n in (True, False):
        group = [b for b in blocks if (b[2] is not None) == with_n]
        if len(group) < 2:
            continue
        idx = [i for b in group for i in b if i is not None]
        if movable is not None and not set(idx) <= movable:
            continue
        taus = []
        for ir, iq, i_n in group:
            n = p[i_n] if i_n is not None else 1.0
            rq = p[ir] * p[iq]
            taus.append(math.log(rq) / n if n > 0 and rq > 0 else math.inf)  # ln tau
        order = np.argsort(taus, kind="stable")
        if np.all(order == np.arange(len(group))):
            continue
        for dst, src in zip(group, (group[k] for k in order), strict=True):
            for i_dst, i_src in zip(dst, src, strict=True):
                if i_dst is not None:
                    out[i_dst] = p[i_src]
        changed = True
    return out if changed else None


def _rms_relative(res: FitResult) -> float:
    rr = res.relative_residuals
    return float(np.sqrt(np.mean(rr.real**2 + rr.imag**2) / 2))


def _fit_once(c, f, zz, start, held, fixed, weight, lo, hi, rel_limit, optimize=True) -> FitResult:
    """One least-squares run from ``start`` with ``held`` parameters constant; the result reports
    as fixed only the user's ``fixed``. Without ``optimize``, evaluates at ``start``."""
    names = c.param_names
    free_idx = np.array([i for i, n in enumerate(names) if n not in held], dtype=int)
    tr = _Transform(lo[free_idx], hi[free_idx])
    user_free_idx = np.array([i for i, n in enumerate(names) if n not in fixed], dtype=int)
    p_full = np.array([float(held.get(n, start.get(n, np.nan))) for n in names])
    if not np.all(np.isfinite(p_full)):
        missing = [n for n, v in zip(names, p_full, strict=True) if not math.isfinite(v)]
        raise FitError(f"no starting value for {missing}")
    prob = _Problem(c, f, zz, weight, free_idx, p_full, tr)
    u0 = tr.to_u(p_full[free_idx])
    prob.window(u0, U_SPAN)
    if free_idx.size and optimize:
        sol = least_squares(
            prob.residuals,
            u0,
            jac=prob.jacobian,
            method="lm",
            x_scale=1.0,
            ftol=FTOL,
            xtol=FTOL,
            gtol=FTOL,
            max_nfev=MAX_NFEV_PER_PARAM * (free_idx.size + 1),
        )
        u, success, message, nfev = sol.x, bool(sol.success), str(sol.message), int(sol.nfev)
    else:
        u, success, message, nfev = u0, True, "evaluated, not optimised", 1
    prob._eval(u)
    ordered = canonical_arc_order(c, prob._p, movable=set(free_idx.tolist()))
    if ordered is not None:
        u = tr.to_u(ordered[free_idx])
        prob._eval(u)
    p = prob._p
    r = prob._r
    chi2 = float(r @ r)
    if len(held) != len(fixed):
        # covariance over every parameter the user left free, also those held for a stage
        free_idx = user_free_idx
        jac = c.impedance_and_jacobian(p, f)[1][free_idx]
        jnat = np.hstack((jac.real, jac.imag)).T * prob.w[:, None]
    else:
        jnat = prob._jnat
    m, k = r.size, free_idx.size
    dof = max(m - k, 1)
    cov, cov_finite, null = _covariance(jnat, p[free_idx], chi2 / dof)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None)) if k else np.zeros(0)
    free_names = [names[i] for i in free_idx]
    stderr = dict.fromkeys(names, 0.0)
    stderr.update(zip(free_names, sd.tolist(), strict=True))
    values = dict(zip(names, p.tolist(), strict=True))
    poorly = [
        n
        for n in free_names
        if not math.isfinite(stderr[n])
        or (values[n] != 0 and stderr[n] / abs(values[n]) > rel_limit)
    ]
    log_term = m * math.log(chi2 / m) if chi2 > 0 else -math.inf
    return FitResult(
        circuit=c.text,
        values=values,
        stderr=stderr,
        free=free_names,
        fixed={n: values[n] for n in fixed},
        covariance=cov,
        covariance_pinv=cov_finite,
        null_space=null,
        chi2=chi2,
        reduced_chi2=chi2 / dof,
        aic=log_term + 2 * k,
        bic=log_term + k * math.log(m),
        weight=weight,
        n_points=f.size,
        frequency_hz=f,
        z_data=zz,
        z_fit=prob._zm.copy(),
        residuals=r.copy(),
        success=success,
        message=message,
        nfev=nfev,
        initial={n: float(start.get(n, fixed.get(n, np.nan))) for n in names},
        poorly_determined=poorly,
    )


def chi2_of(circuit: str | Circuit, params, frequency_hz, z, *, weight: str = "unit") -> float:
    """chi2 (as defined in this module) of given parameter values on a spectrum, e.g. a published
    fit, so that it can be compared with :func:`fit_circuit`'s."""
    c = parse_circuit(circuit)
    f, zz = clean_spectrum(frequency_hz, z)
    s_re, s_im = sigmas(zz, weight)
    d = c.impedance(params, f) - zz
    return float(np.sum((d.real / s_re) ** 2 + (d.imag / s_im) ** 2))
