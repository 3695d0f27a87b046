"""Kramers-Kronig validation of impedance spectra by the linear Lin-KK test.

Schönleber, Klotz and Ivers-Tiffée, Electrochim. Acta 131 (2014) 20-27: the spectrum is fitted
with M series RC elements whose time constants are log-spaced from 1/omega_max to 1/omega_min,
plus a series resistance and, optionally, a series inductance and capacitance::

    Z = R_0 + j omega L + 1 / (j omega C) + sum_k R_k / (1 + j omega tau_k)

Every such model satisfies the Kramers-Kronig relations, and the fit is linear (one least-squares
solve per M, residuals divided by |Z|). M is chosen automatically: the smallest M for which
``mu = 1 - sum|R_k<0| / sum|R_k>=0|`` falls to ``c`` (0.85), i.e. before the RC elements begin
to fit noise with alternating signs. Two changes to the original rule (the first M with mu <= c)
make it robust for CPE-like arcs, where mu dips at small M while the fit is still poor and
stopping there fails valid spectra: M starts at two elements per decade of the band, and mu must
stay at or below c for five successive M (if it never does, ``max_m`` is used).

A spectrum passes when the RMS of the relative residuals (real and imaginary together) stays
below ``rms_limit``; drift during the sweep, non-linearity or an unstable system leave larger,
systematic residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellbench.core.errors import CellbenchError

SUSTAIN = 5


class KKError(CellbenchError, ValueError):
    """Spectrum that the Lin-KK test cannot be run on."""


@dataclass
class KKResult:
    """Outcome of :func:`lin_kk`. Residuals are (Z_data - Z_KK) / |Z_data|, per frequency."""

    frequency_hz: np.ndarray
    m: int
    mu: float
    residual_real: np.ndarray
    residual_imag: np.ndarray
    z_fit: np.ndarray
    rms: float
    max_abs: float
    rms_limit: float
    passed: bool

    def to_dict(self) -> dict:
        return {
            "m": self.m,
            "mu": self.mu,
            "rms": self.rms,
            "max_abs": self.max_abs,
            "rms_limit": self.rms_limit,
            "passed": self.passed,
        }


def _design(w: np.ndarray, tau: np.ndarray, inductance: bool, capacitance: bool) -> np.ndarray:
    cols = [np.ones(w.size, dtype=complex)]
    cols.extend(1.0 / (1.0 + 1j * np.outer(w, tau)).T)
    if inductance:
        cols.append(1j * w)
    if capacitance:
        cols.append(1.0 / (1j * w))
    return np.array(cols).T


def lin_kk(
    frequency_hz,
    z,
    *,
    c: float = 0.85,
    max_m: int = 50,
    inductance: bool = True,
    capacitance: bool = True,
    rms_limit: float = 0.01,
) -> KKResult:
    """Run the Lin-KK test; see the module documentation for the method and the pass rule.

    ``frequency_hz`` / Hz, complex ``z`` / ohm. ``rms_limit`` is a fraction of |Z| (0.01 = 1 %):
    set it near the instrument's accuracy.
    """
    f = np.asarray(frequency_hz, dtype=float).ravel()
    zz = np.asarray(z, dtype=complex).ravel()
    if f.shape != zz.shape:
        raise KKError(f"frequency ({f.size}) and impedance ({zz.size}) differ in length")
    ok = np.isfinite(f) & np.isfinite(zz) & (f > 0)
    f, zz = f[ok], zz[ok]
    if f.size < 5:
        raise KKError(f"Lin-KK needs at least 5 points, got {f.size}")
    w = 2 * np.pi * f
    wt = 1.0 / np.abs(zz)
    b = np.concatenate((zz.real * wt, zz.imag * wt))
    n_extra = 1 + int(inductance) + int(capacitance)
    # keep the linear problem over-determined: 2N residuals, M + extras unknowns
    m_top = max(1, min(max_m, 2 * f.size - n_extra - 1))
    # below two elements per decade the RC elements are too sparse to follow a CPE-like arc and
    # take negative values for that reason alone, which would end the search far too early
    m_min = min(m_top, max(1, int(np.ceil(2 * np.log10(w.max() / w.min())))))
    fits = []
    for m in range(m_min, m_top + 1):
        tau = np.logspace(np.log10(1 / w.max()), np.log10(1 / w.min()), m) if m > 1 else None
        if tau is None:
            tau = np.array([1 / np.sqrt(w.max() * w.min())])
        a = _design(w, tau, inductance, capacitance)
        a_re = np.vstack((a.real * wt[:, None], a.imag * wt[:, None]))
        norm = np.linalg.norm(a_re, axis=0)
        norm[norm == 0] = 1.0
        x = np.linalg.lstsq(a_re / norm, b, rcond=None)[0] / norm
        r_k = x[1 : 1 + m]
        pos = np.sum(np.abs(r_k[r_k >= 0]))
        neg = np.sum(np.abs(r_k[r_k < 0]))
        mu = 1.0 - neg / pos if pos > 0 else 0.0
        fits.append((m, mu, a @ x))
        # stop once mu has stayed at or below c for SUSTAIN successive M: a single dip is a
        # transient of the element placement, not the onset of fitting noise
        if len(fits) >= SUSTAIN and all(ft[1] <= c for ft in fits[-SUSTAIN:]):
            break
    low = [i for i in range(len(fits)) if all(ft[1] <= c for ft in fits[i : i + SUSTAIN])]
    m, mu, z_fit = fits[low[0]] if low and low[0] + SUSTAIN <= len(fits) else fits[-1]
    res = (zz - z_fit) / np.abs(zz)
    rms = float(np.sqrt(np.mean(res.real**2 + res.imag**2) / 2))
    max_abs = float(np.max(np.maximum(np.abs(res.real), np.abs(res.imag))))
    return KKResult(
        frequency_hz=f,
        m=m,
        mu=float(mu),
        residual_real=res.real,
        residual_imag=res.imag,
        z_fit=z_fit,
        rms=rms,
        max_abs=max_abs,
        rms_limit=rms_limit,
        passed=bool(rms <= rms_limit),
    )
