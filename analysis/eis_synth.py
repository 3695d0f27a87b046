"""Synthetic impedance spectra with known truth: noisy spectra of any circuit, and random
solid-electrolyte cells for parameter-recovery tests and benchmarks.

The solid-electrolyte cell is ``L0-R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)``:

- ``L0``: lead inductance / H;
- ``R0``: series and bulk resistance / ohm (the bulk arc of a pellet, C ~ pF, sits at GHz, so the
  bulk shows as a resistance);
- ``p(R1,CPE1)``: grain boundaries (effective capacitance ~1e-10..1e-8 F);
- ``p(R2,CPE2)``: electrolyte | electrode interface (~1e-7..1e-5 F);
- ``p(R3,CPE3)``: a slower electrode process (charge transfer, passivation layer; ~1e-4..1e-2 F).

Noise is Gaussian on each component with standard deviation ``noise * |Z|`` (``noise=0.01`` is
"1 % noise").
"""

from __future__ import annotations

import numpy as np

from cellbench.analysis.circuits import Circuit, parse_circuit

SOLID_STATE_CIRCUIT = "L0-R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)"


def frequencies(f_max_hz: float = 1e6, f_min_hz: float = 1e-2, per_decade: int = 10) -> np.ndarray:
    """Log-spaced frequencies / Hz, highest first, as impedance analysers sweep."""
    n = round(np.log10(f_max_hz / f_min_hz) * per_decade) + 1
    return np.logspace(np.log10(f_max_hz), np.log10(f_min_hz), n)


def noisy_spectrum(
    circuit: str | Circuit,
    params,
    frequency_hz,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Z / ohm of ``circuit`` plus Gaussian noise of sd ``noise * |Z|`` on each component."""
    c = parse_circuit(circuit)
    z = c.impedance(params, frequency_hz)
    if noise <= 0:
        return z
    rng = rng if rng is not None else np.random.default_rng()
    mag = np.abs(z)
    return z + noise * mag * (rng.standard_normal(z.size) + 1j * rng.standard_normal(z.size))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(10 ** rng.uniform(np.log10(lo), np.log10(hi)))


def _rq(r_ohm: float, apex_hz: float, n: float) -> float:
    """CPE Q / F s^(n-1) that puts the apex of p(R, CPE) at ``apex_hz``."""
    return 1.0 / (r_ohm * (2 * np.pi * apex_hz) ** n)


def relative_crb_covariance(
    circuit: str | Circuit, params, frequency_hz, *, noise: float = 0.01
) -> tuple[list[str], np.ndarray]:
    """Cramer-Rao bound on the covariance of the relative errors of all parameters.

    For the noise model of :func:`noisy_spectrum` (sd ``noise * |Z|`` on each component): the
    inverse Fisher information in ``d(param) / param``. Returns (parameter names, matrix).
    """
    c = parse_circuit(circuit)
    p = c.as_array(params)
    z, jac = c.impedance_and_jacobian(p, frequency_hz)
    sd = noise * np.abs(z)
    j = np.hstack((jac.real, jac.imag)).T / np.concatenate((sd, sd))[:, None] * p[None, :]
    return list(c.param_names), np.linalg.pinv(j.T @ j)


def relative_crb(
    circuit: str | Circuit, params, frequency_hz, *, noise: float = 0.01
) -> dict[str, float]:
    """Cramer-Rao bound on the relative standard error of each parameter.

    For the noise model of :func:`noisy_spectrum`: the smallest standard error any unbiased fit
    can reach, divided by the value. It tells a hard spectrum from a failing fitter.
    """
    names, cov = relative_crb_covariance(circuit, params, frequency_hz, noise=noise)
    return dict(zip(names, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist(), strict=True))


def attainable_recovery(
    circuit: str | Circuit,
    params,
    frequency_hz,
    names: tuple[str, ...],
    *,
    tolerance: float = 0.03,
    noise: float = 0.01,
    draws: int = 4000,
    seed: int = 0,
) -> float:
    """Probability that an efficient fit puts every parameter in ``names`` within
    ``tolerance`` (relative) of the truth: Gaussian errors with the Cramer-Rao covariance,
    correlations included, by Monte Carlo. The best any unbiased fitter can do on this cell."""
    all_names, cov = relative_crb_covariance(circuit, params, frequency_hz, noise=noise)
    idx = [all_names.index(n) for n in names]
    sub = cov[np.ix_(idx, idx)]
    rng = np.random.default_rng(seed)
    err = rng.multivariate_normal(np.zeros(len(idx)), sub, draws, check_valid="ignore")
    return float(np.mean(np.all(np.abs(err) <= tolerance, axis=1)))


def random_solid_state_cell(
    rng: np.random.Generator,
    *,
    gb_in_band: bool = True,
    frequency_hz: np.ndarray | None = None,
    noise: float = 0.01,
    max_crb: float = 0.01,
) -> dict[str, float]:
    """Parameters of :data:`SOLID_STATE_CIRCUIT` for a random cell measured from 1 MHz to 10 mHz.

    With ``gb_in_band`` every arc's apex lies inside the band, at least 1.5 decades from the next,
    and cells are re-drawn until the Cramer-Rao bound of every resistance at ``noise`` is below
    ``max_crb`` (a 1 % bound makes a 3 % error a three-sigma event; cells outside it hold too
    little information for any fitter; at 10 points per decade the filter keeps only about 2 %
    of the draws, :func:`random_in_band_cell` gives unfiltered cells). Otherwise the
    grain-boundary apex lies between 3 and 30 MHz, above the band, so that only R0 + R1 is
    identifiable; then the bound applies to R2 and R3.
    """
    f = frequencies() if frequency_hz is None else frequency_hz
    while True:
        p = _draw_cell(rng, gb_in_band)
        crb = relative_crb(SOLID_STATE_CIRCUIT, p, f, noise=noise)
        names = ("R0", "R1", "R2", "R3") if gb_in_band else ("R2", "R3")
        if all(crb[n] <= max_crb for n in names):
            return p


def random_in_band_cell(
    rng: np.random.Generator,
    *,
    f_max_hz: float = 1e6,
    f_min_hz: float = 1e-2,
    margin_decades: float = 0.5,
    separation_decades: float = 1.0,
) -> dict[str, float]:
    """Parameters of :data:`SOLID_STATE_CIRCUIT` with every arc inside the band, NOT filtered by
    how well the data could determine them.

    The three apex frequencies are log-uniform at least ``margin_decades`` inside
    [``f_min_hz``, ``f_max_hz``], in the order grain boundary > interface > slow process, each
    at least ``separation_decades`` from the next; resistances, exponents and L as in
    :func:`random_solid_state_cell`. Many such cells hold too little information for a 3 %
    recovery at 1 % noise (overlapping arcs, an arc half outside the band); a fit must then say
    so through its standard errors.
    """
    p = _draw_cell(rng, True)
    lo, hi = np.log10(f_min_hz) + margin_decades, np.log10(f_max_hz) - margin_decades
    if hi - lo < 2 * separation_decades:
        raise ValueError("band too narrow for three separated arcs")
    while True:
        apex = np.sort(rng.uniform(lo, hi, 3))[::-1]
        if np.all(-np.diff(apex) >= separation_decades):
            break
    for k, log_f in zip((1, 2, 3), apex, strict=True):
        p[f"CPE{k}.Q"] = _rq(p[f"R{k}"], 10**log_f, p[f"CPE{k}.n"])
    return p


def _draw_cell(rng: np.random.Generator, gb_in_band: bool) -> dict[str, float]:
    r0 = _loguniform(rng, 30, 1000)
    r1 = r0 * 10 ** rng.uniform(-0.3, 0.5)
    r2 = r0 * 10 ** rng.uniform(0.0, 1.0)
    r3 = r2 * 10 ** rng.uniform(-0.3, 0.5)
    n1, n2, n3 = rng.uniform(0.85, 0.97), rng.uniform(0.8, 0.95), rng.uniform(0.8, 0.95)
    f1 = 10 ** rng.uniform(3.7, 4.8) if gb_in_band else 10 ** rng.uniform(6.5, 7.5)
    f2 = 10 ** rng.uniform(1.3, 2.2)
    f3 = 10 ** rng.uniform(-1.2, -0.5)
    return {
        "L0": _loguniform(rng, 1e-7, 1e-6),
        "R0": r0,
        "R1": r1,
        "CPE1.Q": _rq(r1, f1, n1),
        "CPE1.n": n1,
        "R2": r2,
        "CPE2.Q": _rq(r2, f2, n2),
        "CPE2.n": n2,
        "R3": r3,
        "CPE3.Q": _rq(r3, f3, n3),
        "CPE3.n": n3,
    }
