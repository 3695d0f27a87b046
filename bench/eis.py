"""Benchmark: equivalent-circuit fits by cellbench and impedance.py on the same spectra, one run.

    python bench/eis.py [--count 200] [--seed 2024] [--noise 0.01] [--cells crb|in-band]

Spectra: ``count`` random solid-electrolyte cells ``L0-R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)``,
1 MHz..10 mHz at 10 points per decade, 1 % Gaussian noise on each component (of |Z|). ``crb``
(default): :func:`cellbench.analysis.eis_synth.random_solid_state_cell`, every arc's apex inside
the band and only cells whose Cramer-Rao bound allows 1 % on every resistance; ``in-band``:
:func:`cellbench.analysis.eis_synth.random_in_band_cell`, apexes anywhere at least half a decade
inside the band, not filtered (about half of them cannot be recovered to 3 % by any fit).

- cellbench: ``fit_circuit(circuit, f, z)`` with NO initial guess (automatic guesses,
  multi-start), modulus weighting.
- impedance.py (``pip install impedance``; optional): ``CustomCircuit(circuit,
  initial_guess=...).fit(f, z, weight_by_modulus=True)`` -- the same objective. impedance.py has
  no automatic guess, so it is GIVEN the true parameters, each scaled by a random factor
  exp(N(0, 0.2)) (about +-20 %), exponents capped at 0.99.

Each spectrum is fitted by both tools back to back, so load from elsewhere hits both alike. chi2
is the sum of squared residuals divided by |Z| (the quantity both minimise), computed by the same
function for both. Figures: per-fit wall time (median), fits per second (count / total time),
parameter error of the four resistances, chi2 of cellbench relative to impedance.py's.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from cellbench.analysis.circuits import parse_circuit
from cellbench.analysis.eis_fit import chi2_of, fit_circuit
from cellbench.analysis.eis_synth import (
    SOLID_STATE_CIRCUIT,
    frequencies,
    noisy_spectrum,
    random_in_band_cell,
    random_solid_state_cell,
)

RESISTANCES = ("R0", "R1", "R2", "R3")


def _reference():
    try:
        from impedance.models.circuits import CustomCircuit
    except ImportError:
        return None
    return CustomCircuit


def _impedance_py_fit(custom_circuit, names, guess, f, z) -> dict[str, float]:
    circ = custom_circuit(SOLID_STATE_CIRCUIT, initial_guess=[guess[n] for n in names])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        circ.fit(f, z, weight_by_modulus=True)
    return dict(zip(names, map(float, circ.parameters_), strict=True))


def _summary(errors: np.ndarray) -> tuple[float, float, float]:
    """(share with all resistances within 3 %, median |error|, 99th percentile |error|)."""
    worst = np.max(np.abs(errors), axis=1)
    return (
        float(np.mean(worst <= 0.03)),
        float(np.median(np.abs(errors))),
        float(np.percentile(np.abs(errors), 99)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--cells", choices=("crb", "in-band"), default="crb")
    args = ap.parse_args()

    f = frequencies()
    names = parse_circuit(SOLID_STATE_CIRCUIT).param_names
    rng = np.random.default_rng(args.seed)
    cells = []
    for _ in range(args.count):
        if args.cells == "crb":
            p = random_solid_state_cell(rng, noise=args.noise)
        else:
            p = random_in_band_cell(rng)
        z = noisy_spectrum(SOLID_STATE_CIRCUIT, p, f, noise=args.noise, rng=rng)
        guess = {n: p[n] * float(np.exp(rng.normal(0, 0.2))) for n in names}
        guess.update({n: min(v, 0.99) for n, v in guess.items() if n.endswith(".n")})
        cells.append((p, z, guess))

    reference = _reference()
    # warm up both (imports, first-call overheads) outside the timed loop
    fit_circuit(SOLID_STATE_CIRCUIT, f, cells[0][1])
    if reference is not None:
        _impedance_py_fit(reference, names, cells[0][2], f, cells[0][1])

    t_cb, t_ref, err_cb, err_ref, chi_cb, chi_ref = [], [], [], [], [], []
    for i, (p, z, guess) in enumerate(cells):
        t0 = time.perf_counter()
        res = fit_circuit(SOLID_STATE_CIRCUIT, f, z)
        t_cb.append(time.perf_counter() - t0)
        err_cb.append([res.values[k] / p[k] - 1 for k in RESISTANCES])
        chi_cb.append(res.chi2)
        if reference is not None:
            t0 = time.perf_counter()
            values = _impedance_py_fit(reference, names, guess, f, z)
            t_ref.append(time.perf_counter() - t0)
            err_ref.append([values[k] / p[k] - 1 for k in RESISTANCES])
            chi_ref.append(chi2_of(SOLID_STATE_CIRCUIT, values, f, z, weight="modulus"))
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(cells)} spectra fitted", flush=True)

    cb = _summary(np.array(err_cb))
    rows = [
        (
            "per-fit time, median / ms",
            1e3 * np.median(t_cb),
            1e3 * np.median(t_ref) if t_ref else None,
        ),
        ("fits per second", len(t_cb) / sum(t_cb), len(t_ref) / sum(t_ref) if t_ref else None),
        ("all 4 resistances within 3 % / %", 100 * cb[0], None),
        ("|resistance error|, median / %", 100 * cb[1], None),
        ("|resistance error|, p99 / %", 100 * cb[2], None),
        ("chi2 (modulus weights), median", float(np.median(chi_cb)), None),
    ]
    if t_ref:
        ref = _summary(np.array(err_ref))
        rows[2] = (rows[2][0], rows[2][1], 100 * ref[0])
        rows[3] = (rows[3][0], rows[3][1], 100 * ref[1])
        rows[4] = (rows[4][0], rows[4][1], 100 * ref[2])
        rows[5] = (rows[5][0], rows[5][1], float(np.median(chi_ref)))

    print()
    print(
        f"EIS fits: {len(cells)} random solid-electrolyte cells {SOLID_STATE_CIRCUIT}, "
        f"{f.size} points, {100 * args.noise:g} % noise, cells: {args.cells}"
    )
    print("cellbench: no initial guess | impedance.py: given truth x exp(N(0, 0.2)) as guess")
    print(f"{'figure':<36} {'cellbench':>12} {'impedance.py':>14} {'ratio':>8}")
    for name, a, b in rows:
        if b is None:
            print(f"{name:<36} {a:12.4g} {'n/a (not installed)' if reference is None else '-':>14}")
            continue
        ratio = (b / a) if "time" in name else (a / b if b else float("nan"))
        print(f"{name:<36} {a:12.4g} {b:14.4g} {ratio:8.3g}")
    if t_ref:
        c_cb, c_ref = np.array(chi_cb), np.array(chi_ref)
        not_worse = np.mean(c_cb <= c_ref * (1 + 1e-6))
        speed = np.median(np.array(t_ref) / np.array(t_cb))
        print(
            f"median per-spectrum speed-up {speed:.1f}x; cellbench chi2 <= impedance.py chi2 on "
            f"{100 * not_worse:.1f} % of spectra (median ratio {np.median(c_cb / c_ref):.4f})"
        )
    print("ratio: time rows = impedance.py / cellbench (higher: cellbench faster); others a / b")


if __name__ == "__main__":
    main()
