"""Synthetic frames for the report tests: a fading cell's cycles, impedance sweeps at several
temperatures and cycles, a CCD staircase with a short. Deterministic (fixed seeds)."""

from __future__ import annotations

import numpy as np
import polars as pl

from cellbench.analysis.circuits import parse_circuit

CAPACITY_AH = 0.002
CURRENT_A = 0.001
CIRCUIT = "R0-p(R1,CPE1)"


def _ocv(x: np.ndarray) -> np.ndarray:
    """Open-circuit voltage against state of charge: a slope with one plateau (a dQ/dV peak)."""
    return 3.3 + 0.8 * x - 0.03 * np.tanh((x - 0.5) / 0.05)


def cycling_samples(cycles: int = 12, dt_s: float = 30.0, seed: int = 3) -> pl.DataFrame:
    """CC charge / CC discharge cycles of a cell losing 0.4 % of its capacity per cycle."""
    rng = np.random.default_rng(seed)
    t0 = 0.0
    parts = []
    for c in range(1, cycles + 1):
        q_max = CAPACITY_AH * (1 - 0.004 * (c - 1) - 0.002 * np.sqrt(c - 1))
        n = int(q_max / CURRENT_A * 3600 / dt_s)
        for sign, step in ((1.0, 1), (-1.0, 2)):
            k = np.arange(n)
            q = k * dt_s * CURRENT_A / 3600
            x = q / q_max if sign > 0 else 1 - q / q_max
            v = _ocv(x) + sign * 0.02 + rng.normal(0, 2e-4, n)
            parts.append(
                pl.DataFrame(
                    {
                        "test_time_second": t0 + k * dt_s,
                        "voltage_volt": v,
                        "current_ampere": np.full(n, sign * CURRENT_A),
                        "cycle_count": np.full(n, c, dtype=np.int32),
                        "step_count": np.full(n, 2 * c - 2 + step, dtype=np.int32),
                        "step_index": np.full(n, step - 1, dtype=np.int32),
                        "temperature_celsius": 25.0 + rng.normal(0, 0.05, n),
                    }
                )
            )
            t0 += n * dt_s
    df = pl.concat(parts)
    return df.with_columns(
        pl.lit("cell1").alias("channel"),
        (pl.col("test_time_second") + 1.7e9).alias("unix_time_second"),
    )


def spectra(
    temperatures=(25.0, 45.0, 65.0, 25.0, 25.0, 25.0),
    cycles=(1, 1, 1, 1, 5, 10),
    seed: int = 5,
) -> pl.DataFrame:
    """R0-p(R1,CPE1) sweeps: R0 Arrhenius in temperature, R1 growing with cycle; 0.2 % noise."""
    rng = np.random.default_rng(seed)
    circuit = parse_circuit(CIRCUIT)
    f = np.logspace(5, 0, 31)
    parts = []
    for k, (t, c) in enumerate(zip(temperatures, cycles, strict=True)):
        r0 = 40.0 * np.exp(0.3 / 8.617e-5 * (1 / (t + 273.15) - 1 / 298.15))
        params = {"R0": r0, "R1": 35.0 + 1.5 * (c - 1), "CPE1.Q": 2e-6, "CPE1.n": 0.85}
        z = circuit.impedance(params, f)
        z = z * (1 + rng.normal(0, 0.002, f.size) + 1j * rng.normal(0, 0.002, f.size))
        parts.append(
            pl.DataFrame(
                {
                    "channel": "cell1",
                    "sweep_index": np.full(f.size, k, dtype=np.int32),
                    "test_time_second": 1000.0 * k + np.arange(f.size),
                    "unix_time_second": 1.7e9 + 1000.0 * k + np.arange(f.size),
                    "frequency_hertz": f,
                    "z_real_ohm": z.real,
                    "z_imag_ohm": z.imag,
                    "cycle_count": np.full(f.size, c, dtype=np.int32),
                    "temperature_celsius": np.full(f.size, t),
                }
            )
        )
    return pl.concat(parts)


def ccd_samples(area_cm2: float = 0.785, seed: int = 9) -> pl.DataFrame:
    """Li|SE|Li staircase, +/- alternating steps of rising current; the cell shorts at 1 mA/cm2."""
    rng = np.random.default_rng(seed)
    r = 60.0
    rows_t, rows_v, rows_i = [], [], []
    t = 0.0
    for j in (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2):
        for sign in (1.0, -1.0):
            i = sign * j * area_cm2 * 1e-3
            for k in range(40):
                v = i * r * (1 + 0.002 * k) + rng.normal(0, 2e-4)
                if j >= 1.0 and k >= 20:
                    v = i * 0.5 + rng.normal(0, 2e-5)  # the short: the voltage collapses
                rows_t.append(t)
                rows_v.append(v)
                rows_i.append(i)
                t += 10.0
            if j >= 1.0:
                break
        if j >= 1.0:
            break
    return pl.DataFrame(
        {"test_time_second": rows_t, "voltage_volt": rows_v, "current_ampere": rows_i}
    )


def conductivity_points() -> tuple[np.ndarray, np.ndarray]:
    """(temperature / degC, sigma / S cm-1): Arrhenius with Ea = 0.35 eV, 1 % scatter."""
    rng = np.random.default_rng(11)
    t = np.array([0.0, 20.0, 40.0, 60.0, 80.0])
    sigma = 1e-3 * np.exp(-0.35 / 8.617e-5 * (1 / (t + 273.15) - 1 / 298.15))
    return t, sigma * (1 + rng.normal(0, 0.01, t.size))
