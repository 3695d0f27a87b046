"""Distribution of relaxation times (DRT) by Tikhonov-regularised non-negative least squares.

Model (omega = 2 pi f)::

    Z(omega) = R_inf + j omega L + sum_k g_k / (1 + j omega tau_k)
    g_k = gamma(ln tau_k) dln tau

with ``tau_k`` log-spaced over the measured band widened by ``extend_decades`` on each side, and
``R_inf``, ``L``, ``g_k`` >= 0. Residuals are divided by ``|Z|`` so that every decade counts alike.
The penalty is ``lambda * ||g||^2`` (ridge); ``lambda`` is chosen by generalised cross-validation
(GCV) of the unconstrained problem, which has a closed form over one SVD, and the non-negative
problem is then solved at that ``lambda``. Peaks of ``gamma`` give the relaxation times and the
resistance under each peak (summed between the neighbouring minima): a circuit-free picture of the
arcs, used by :mod:`cellbench.analysis.eis_guess` to start fits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls
from scipy.signal import find_peaks

from cellbench.core.errors import CellbenchError


class DRTError(CellbenchError, ValueError):
    """Spectrum that a DRT cannot be computed from."""


@dataclass(frozen=True)
class DRTPeak:
    """One relaxation: time constant / s, apex frequency / Hz, resistance under the peak / ohm."""

    tau_s: float
    frequency_hz: float
    r_ohm: float
    relative: float = 1.0  # r_ohm / |Z| at the peak frequency: how much the arc shows


@dataclass
class DRTResult:
    """``gamma_ohm`` is gamma(ln tau) / ohm per unit ln tau at ``tau_s``."""

    tau_s: np.ndarray
    gamma_ohm: np.ndarray
    r_inf_ohm: float
    inductance_henry: float
    lam: float
    residual_rms: float  # RMS of (Z - Z_fit) / |Z|, real and imaginary together
    z_fit: np.ndarray
    peaks: list[DRTPeak] = field(default_factory=list)

    @property
    def r_polarization_ohm(self) -> float:
        return float(np.sum(self.gamma_ohm) * self._dlnt)

    @property
    def _dlnt(self) -> float:
        return float(np.log(self.tau_s[1] / self.tau_s[0])) if self.tau_s.size > 1 else 1.0

    def to_dict(self) -> dict:
        return {
            "r_inf_ohm": self.r_inf_ohm,
            "inductance_henry": self.inductance_henry,
            "lambda": self.lam,
            "residual_rms": self.residual_rms,
            "peaks": [p.__dict__ for p in self.peaks],
        }


def _check(frequency_hz, z) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(frequency_hz, dtype=float)
    zz = np.asarray(z, dtype=complex)
    if f.ndim != 1 or f.shape != zz.shape:
        raise DRTError(
            f"frequency and impedance must be 1-D of equal length, got {f.shape}, {zz.shape}"
        )
    ok = np.isfinite(f) & np.isfinite(zz) & (f > 0)
    if ok.sum() < 5:
        raise DRTError(f"need at least 5 finite points with f > 0, got {int(ok.sum())}")
    return f[ok], zz[ok]


def drt(
    frequency_hz,
    z,
    *,
    lam: float | None = None,
    method: str = "gcv",
    points_per_decade: float = 8.0,
    extend_decades: float = 1.0,
    min_peak_fraction: float = 0.02,
) -> DRTResult:
    """Compute the DRT of one spectrum and list its peaks.

    ``lam`` fixes the regularisation (relative to the largest squared singular value of the
    weighted kernel); by default it is chosen by ``method``: ``"gcv"`` (generalised
    cross-validation) or ``"lcurve"`` (the corner of the L-curve, the point of largest curvature
    of log residual norm against log solution norm). Peaks whose resistance is
    less than ``min_peak_fraction`` of |Z| at their frequency are dropped.
    """
    f, zz = _check(frequency_hz, z)
    w = 2 * np.pi * f
    lo = np.log10(1 / w.max()) - extend_decades
    hi = np.log10(1 / w.min()) + extend_decades
    m = max(round((hi - lo) * points_per_decade) + 1, 8)
    tau = np.logspace(lo, hi, m)
    dlnt = np.log(tau[1] / tau[0])
    wt = 1.0 / np.abs(zz)
    k = 1.0 / (1.0 + 1j * np.outer(w, tau))  # (n, m)
    a_fix = np.zeros((2 * f.size, 2))
    a_fix[: f.size, 0] = wt
    a_fix[f.size :, 1] = w * wt
    # Columns are scaled by |Z| near omega = 1/tau, so the penalty acts on g relative to the local
    # impedance and a small high-frequency arc is not smoothed away beside a large slow one.
    order = np.argsort(w)
    col = np.interp(-np.log(tau), np.log(w[order]), np.abs(zz[order]))
    a_g = np.vstack((k.real * wt[:, None], k.imag * wt[:, None])) * col[None, :]
    b = np.concatenate((zz.real * wt, zz.imag * wt))
    # Scale the L column to order one so that the NNLS is well conditioned.
    l_scale = 1.0 / np.max(w * wt) if np.max(w * wt) > 0 else 1.0
    a_fix[:, 1] *= l_scale

    # GCV on the unconstrained ridge, after projecting out the unpenalised R_inf and L columns.
    qf, _ = np.linalg.qr(a_fix)
    pa = a_g - qf @ (qf.T @ a_g)
    pb = b - qf @ (qf.T @ b)
    u, sv, _ = np.linalg.svd(pa, full_matrices=False)
    s2max = sv[0] ** 2
    if lam is None:
        lam = _choose_lambda(sv, u.T @ pb, pb @ pb, b.size - 2, s2max, method)
    lm = lam * s2max
    a_aug = np.vstack(
        (np.hstack((a_fix, a_g)), np.hstack((np.zeros((m, 2)), np.sqrt(lm) * np.eye(m))))
    )
    b_aug = np.concatenate((b, np.zeros(m)))
    x, _ = nnls(a_aug, b_aug, maxiter=50 * (m + 2))
    r_inf, ind, g = x[0], x[1] * l_scale, x[2:] * col
    z_fit = r_inf + 1j * w * ind + k @ g
    resid = (z_fit - zz) / np.abs(zz)
    rms = float(np.sqrt(np.mean(resid.real**2 + resid.imag**2) / 2))
    gamma = g / dlnt
    # A peak well above the band (tau < 1 / (3 omega_max)) is indistinguishable from R_inf: its
    # resistance is reported in R_inf instead of as a relaxation.
    peaks = drt_peaks(tau, g, col, min_fraction=min_peak_fraction)
    hf_limit = 1 / (3 * w.max())
    r_inf += sum(p.r_ohm for p in peaks if p.tau_s < hf_limit)
    return DRTResult(
        tau_s=tau,
        gamma_ohm=gamma,
        r_inf_ohm=float(r_inf),
        inductance_henry=float(ind),
        lam=float(lam),
        residual_rms=rms,
        z_fit=z_fit,
        peaks=[p for p in peaks if p.tau_s >= hf_limit],
    )


LAMBDA_GRID = np.logspace(-8, 0, 33)


def _choose_lambda(
    sv: np.ndarray, beta: np.ndarray, b2: float, n_dof: int, s2max: float, method: str
) -> float:
    """Regularisation (relative to s2max) by GCV or the L-curve, in closed form over the SVD."""
    rest = max(b2 - beta @ beta, 0.0)
    s2 = sv**2
    lm = (LAMBDA_GRID * s2max)[:, None]  # every lambda of the grid at once (rows)
    denom = s2[None, :] + lm
    resid = np.sum((lm / denom * beta) ** 2, axis=1) + rest
    norm = np.sum((sv * beta / denom) ** 2, axis=1)
    gcv = resid / (n_dof - np.sum(s2 / denom, axis=1)) ** 2
    if method == "gcv":
        return float(LAMBDA_GRID[int(np.argmin(gcv))])
    if method != "lcurve":
        raise DRTError(f"lambda method {method!r} is not 'gcv' or 'lcurve'")
    x = 0.5 * np.log(np.maximum(resid, 1e-300))
    y = 0.5 * np.log(np.maximum(norm, 1e-300))
    t = np.log(LAMBDA_GRID)
    dx, dy = np.gradient(x, t), np.gradient(y, t)
    ddx, ddy = np.gradient(dx, t), np.gradient(dy, t)
    kappa = (dx * ddy - ddx * dy) / np.maximum((dx**2 + dy**2) ** 1.5, 1e-300)
    inner = slice(2, -2)  # the ends of a finite grid have no reliable second derivative
    return float(LAMBDA_GRID[inner][int(np.argmax(np.abs(kappa[inner])))])


def drt_peaks(
    tau_s: np.ndarray, g_ohm: np.ndarray, z_abs_ohm: np.ndarray, *, min_fraction: float = 0.02
) -> list[DRTPeak]:
    """Peaks of the discrete DRT ``g_ohm`` (resistance per tau bin), high frequency first.

    Each peak's resistance is the sum between the minima that bound it; its time constant the
    resistance-weighted geometric mean over that range (robust to a split maximum). Peaks whose
    resistance is below ``min_fraction`` of ``z_abs_ohm`` (|Z| near omega = 1/tau) are dropped.
    """
    g = np.asarray(g_ohm, dtype=float)
    total = g.sum()
    if total <= 0:
        return []
    padded = np.concatenate(([0.0], g, [0.0]))
    idx, _ = find_peaks(padded, prominence=min_fraction * 0.1 * np.min(z_abs_ohm))
    idx = idx - 1
    if idx.size == 0:
        return []
    # boundaries: the minimum between successive peaks
    bounds = [0]
    for a, b in itertools.pairwise(idx):
        bounds.append(a + int(np.argmin(g[a : b + 1])))
    bounds.append(g.size - 1)
    peaks = []
    log_t = np.log(tau_s)
    for i in range(idx.size):
        lo, hi = bounds[i], bounds[i + 1]
        seg = slice(lo, hi + 1 if i == idx.size - 1 else hi)  # a boundary bin goes right
        r = float(g[seg].sum())
        if r <= 0:
            continue
        t = float(np.exp(np.sum(g[seg] * log_t[seg]) / r))
        rel = r / float(np.interp(np.log(t), log_t, z_abs_ohm))
        if rel < min_fraction:
            continue
        peaks.append(DRTPeak(tau_s=t, frequency_hz=1 / (2 * np.pi * t), r_ohm=r, relative=rel))
    peaks.sort(key=lambda p: p.tau_s)
    return peaks
