"""Benchmark: fitting every sweep of one run (1,000 spectra of one cell that ages), warm-started.

    python bench/eis_run.py [--sweeps 1000] [--cold 100] [--seed 7] [--noise 0.01]

One random solid-electrolyte cell (:func:`cellbench.analysis.eis_synth.random_solid_state_cell`,
``L0-R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)``, 1 MHz..10 mHz, 10 points per decade) measured
``--sweeps`` times while it ages: the interface resistance R3 grows by sqrt(sweep) to 2.5x, the
bulk and grain-boundary resistances follow a +-2 K temperature swing (Ea 0.35 eV), 1 % Gaussian
noise on each component of every sweep. The run is fitted the way ``cellbench analyze eis``
fits a run: :func:`cellbench.analysis.eis_batch.fit_spectra`, each sweep starting from the one
before (a warm fit worse than 4x the previous reduced chi2 is refitted cold). Beside it, in the
same process, the first ``--cold`` sweeps are fitted cold (automatic guesses, as
``bench/eis.py`` does per spectrum). Figures: fits per second (CPU and wall), the share of
sweeps with all four resistances within 3 % of the truth, and the ratio warm / cold.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import polars as pl

from cellbench.analysis.eis_batch import fit_spectra
from cellbench.analysis.eis_fit import fit_circuit
from cellbench.analysis.eis_synth import (
    SOLID_STATE_CIRCUIT,
    frequencies,
    noisy_spectrum,
    random_solid_state_cell,
)

RESISTANCES = ("R0", "R1", "R2", "R3")
K_EV = 8.617333262e-5


def run_spectra(
    sweeps: int, seed: int, noise: float
) -> tuple[pl.DataFrame, list[dict[str, float]]]:
    rng = np.random.default_rng(seed)
    f = frequencies()
    base = random_solid_state_cell(rng, noise=noise)
    frames, truths = [], []
    for k in range(sweeps):
        p = dict(base)
        t_k = 298.15 + 2.0 * math.sin(2 * math.pi * k / 200)
        arrhenius = math.exp(0.35 / K_EV * (1 / t_k - 1 / 298.15))
        p["R1"] *= arrhenius
        p["R2"] *= arrhenius
        p["R3"] *= 1 + 1.5 * math.sqrt(k / max(sweeps - 1, 1))
        z = noisy_spectrum(SOLID_STATE_CIRCUIT, p, f, noise=noise, rng=rng)
        truths.append(p)
        frames.append(
            pl.DataFrame(
                {
                    "channel": "cell1",
                    "sweep_index": np.full(f.size, k, dtype=np.int32),
                    "test_time_second": np.full(f.size, 3600.0 * k),
                    "frequency_hertz": f,
                    "z_real_ohm": z.real,
                    "z_imag_ohm": z.imag,
                }
            )
        )
    return pl.concat(frames), truths


def within(values: list[dict[str, float]], truths: list[dict[str, float]]) -> float:
    ok = [
        all(abs(v[n] / t[n] - 1) <= 0.03 for n in RESISTANCES)
        for v, t in zip(values, truths, strict=True)
    ]
    return float(np.mean(ok))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=1000)
    ap.add_argument("--cold", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--noise", type=float, default=0.01)
    args = ap.parse_args()

    spectra, truths = run_spectra(args.sweeps, args.seed, args.noise)
    f = frequencies()
    first = spectra.filter(pl.col("sweep_index") == 0)
    # warm-up outside the timed part: imports, first-call overheads
    z0 = first["z_real_ohm"].to_numpy() + 1j * first["z_imag_ohm"].to_numpy()
    fit_circuit(SOLID_STATE_CIRCUIT, f, z0)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    table = fit_spectra(spectra, SOLID_STATE_CIRCUIT)
    wall_warm, cpu_warm = time.perf_counter() - wall0, time.process_time() - cpu0
    warm_values = table.select(RESISTANCES).to_dicts()

    cold_values, wall_cold, cpu_cold = [], 0.0, 0.0
    for k in range(min(args.cold, args.sweeps)):
        part = spectra.filter(pl.col("sweep_index") == k)
        z = part["z_real_ohm"].to_numpy() + 1j * part["z_imag_ohm"].to_numpy()
        w0, c0 = time.perf_counter(), time.process_time()
        res = fit_circuit(SOLID_STATE_CIRCUIT, part["frequency_hertz"].to_numpy(), z)
        wall_cold += time.perf_counter() - w0
        cpu_cold += time.process_time() - c0
        cold_values.append(res.values)
    n_cold = len(cold_values)

    n = args.sweeps
    print(
        f"EIS run: {n} sweeps of one ageing cell {SOLID_STATE_CIRCUIT}, {f.size} points, "
        f"{100 * args.noise:g} % noise (seed {args.seed})"
    )
    print(f"{'figure':<44} {'warm run':>10} {'cold':>10} {'ratio':>7}")
    rows = [
        ("fits per second (wall)", n / wall_warm, n_cold / wall_cold),
        ("fits per second (CPU)", n / cpu_warm, n_cold / cpu_cold),
        (
            "all 4 resistances within 3 % / %",
            100 * within(warm_values, truths),
            100 * within(cold_values, truths[:n_cold]),
        ),
    ]
    for name, a, b in rows:
        print(f"{name:<44} {a:10.4g} {b:10.4g} {a / b:7.3g}")
    print(f"warm: all {n} sweeps through fit_spectra; cold: the first {n_cold}, one by one")


if __name__ == "__main__":
    main()
