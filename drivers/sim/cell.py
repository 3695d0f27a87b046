"""The one simulated cell that every simulated instrument measures.

Model (SI units unless the name says otherwise; current positive on charge):

* Terminal voltage ``V = OCV(SOC) + I R_fast + eta_w``. ``R_fast`` is the sum of the series,
  bulk, grain-boundary and interface resistances (their time constants are micro- to
  milliseconds, far below any sample period); ``eta_w`` is the diffusion overpotential, a
  first-order lag towards ``I R_w`` with time constant ``tau_w / 3`` (the finite transmissive
  Warburg's relaxation), which gives the slow relaxation GITT and pulses look at.
* Impedance (analytic, :meth:`SimCell.impedance`), in the notation of
  :mod:`cellbench.analysis.circuits`: ``L0-R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)-Ws1`` — lead
  inductance, series resistance, solid-electrolyte bulk and grain boundary (``R = L / (sigma A)``),
  the electrode/electrolyte interface, and finite-length diffusion.
* Conductivity vs temperature: Arrhenius ``sigma = sigma0 exp(-Ea / kT)`` (ceramics, sulfides) or
  VTF ``sigma = A T^-1/2 exp(-B / (T - T0))`` (polymers), both anchored at ``sigma`` at 25 degC.
  The interface follows Arrhenius in its area-specific resistance (ASR).
* Interface ASR falls with stack pressure, ``(P_ref / P)^m``, and grows with cycling,
  ``1 + g sqrt(EFC)`` (EFC: equivalent full cycles = charge throughput / (2 x capacity)).
* Capacity fades linearly with EFC and, past a knee, quadratically.
* A current density above the critical current density (CCD), sustained for a given areal
  charge, shorts the cell for good (lithium dendrite): OCV collapses to 0 and the cell becomes a
  resistor of ``short_resistance_ohm`` (millivolts under load).
* The cell temperature follows the chamber set point with a first-order lag.

State is integrated lazily up to ``clock.now()`` on each call, exactly for piecewise-constant
current (exponential updates), sub-stepped when the current follows the cell (constant voltage,
compliance) or when the SOC moves fast. Every public method takes :attr:`SimCell.lock`.
"""

from __future__ import annotations

import math
import threading
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cellbench.core.clock import ScaledClock

K_BOLTZMANN_EV = 8.617333262e-5  # eV/K
T_REF_KELVIN = 298.15
ZERO_CELSIUS = 273.15


class CellParamsError(ValueError):
    """A cell parameter file or table is missing a value or has one out of range."""


@dataclass(frozen=True)
class CellParams:
    """Parameters of the simulated cell (reference conditions: 25 degC, ``pressure_ref``)."""

    name: str = "simulated cell"
    chemistry: str = "Li|LLZO|Li"
    kind: Literal["symmetric", "full"] = "symmetric"
    area_cm2: float = 0.785
    thickness_cm: float = 0.1  # solid-electrolyte thickness
    capacity_ah: float = 1e-3  # full cell: nominal capacity; symmetric: capacity of one cycle
    initial_soc: float = 0.5
    # open-circuit voltage table (full cell); empty -> 0 V (symmetric cell)
    ocv_soc: tuple[float, ...] = ()
    ocv_volt: tuple[float, ...] = ()
    # leads and contacts
    series_resistance_ohm: float = 0.5
    inductance_henry: float = 1e-7
    # solid electrolyte: bulk and grain boundary
    conductivity_model: Literal["arrhenius", "vtf"] = "arrhenius"
    bulk_sigma_s_per_cm: float = 5e-4  # at 25 degC
    bulk_ea_ev: float = 0.35
    bulk_cpe_q: float = 5e-11  # F s^(n-1)
    bulk_cpe_n: float = 0.95
    gb_sigma_s_per_cm: float = 1e-3  # effective (L / (R_gb A)) at 25 degC; 0 -> no gb arc
    gb_ea_ev: float = 0.45
    gb_cpe_q: float = 2e-9
    gb_cpe_n: float = 0.9
    vtf_b_kelvin: float = 1000.0  # VTF pseudo-activation B (both bulk and gb)
    vtf_t0_kelvin: float = 200.0
    # electrode | electrolyte interface (both interfaces of a symmetric cell together)
    interface_asr_ohm_cm2: float = 50.0  # at 25 degC, pressure_ref, fresh
    interface_ea_ev: float = 0.3
    interface_cpe_q: float = 1e-6
    interface_cpe_n: float = 0.85
    pressure_ref_mpa: float = 5.0
    pressure_exponent: float = 0.5
    interface_growth_per_sqrt_efc: float = 0.05
    # finite transmissive (short) Warburg
    warburg_r_ohm: float = 0.0
    warburg_tau_s: float = 100.0
    # ageing
    fade_per_efc: float = 2e-4
    knee_efc: float = 500.0
    knee_fade_per_efc2: float = 2e-6
    # short above the critical current density
    ccd_ma_per_cm2: float = 0.5
    short_charge_mah_per_cm2: float = 0.05
    short_resistance_ohm: float = 0.01
    # environment
    thermal_tau_s: float = 600.0
    initial_temperature_celsius: float = 25.0
    initial_pressure_mpa: float = 5.0

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "area_cm2", "thickness_cm", "capacity_ah", "bulk_sigma_s_per_cm", "bulk_cpe_q",
            "pressure_ref_mpa", "thermal_tau_s", "warburg_tau_s", "ccd_ma_per_cm2",
            "short_resistance_ohm", "initial_pressure_mpa", "interface_cpe_q",
        ):  # fmt: skip
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("bulk_cpe_n", "gb_cpe_n", "interface_cpe_n"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.kind not in ("symmetric", "full"):
            problems.append(f"kind must be 'symmetric' or 'full', got {self.kind!r}")
        if self.conductivity_model not in ("arrhenius", "vtf"):
            problems.append(f"conductivity_model must be 'arrhenius' or 'vtf', got "
                            f"{self.conductivity_model!r}")  # fmt: skip
        if len(self.ocv_soc) != len(self.ocv_volt):
            problems.append("ocv_soc and ocv_volt must have the same length")
        elif self.ocv_soc and (len(self.ocv_soc) < 2 or np.any(np.diff(self.ocv_soc) <= 0)):
            problems.append("ocv_soc must have >= 2 strictly increasing values")
        if self.kind == "full" and not self.ocv_soc:
            problems.append("a full cell needs an OCV table (ocv_soc, ocv_volt)")
        if self.conductivity_model == "vtf" and not self.vtf_t0_kelvin < T_REF_KELVIN:
            problems.append("vtf_t0_kelvin must be below 298.15 K")
        if problems:
            raise CellParamsError(f"cell parameters {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "cell parameters") -> CellParams:
        """From a flat dict, or TOML tables whose keys are the field names (tables are merged:
        ``[electrolyte] bulk_sigma_s_per_cm = ...``). Unknown keys are an error."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise CellParamsError(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")
        for key in ("ocv_soc", "ocv_volt"):
            if key in flat:
                flat[key] = tuple(float(v) for v in flat[key])
        try:
            return cls(**flat)
        except TypeError as exc:
            raise CellParamsError(f"{source}: {exc}") from None
        except CellParamsError as exc:
            raise CellParamsError(f"{source}: {exc}") from None


def load_cell_params(path: str | Path) -> CellParams:
    """Read a cell parameter TOML file (see ``fixtures/sim/*.toml``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CellParamsError(f"cell parameter file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CellParamsError(f"{path}: {exc}") from None
    return CellParams.from_dict(data, source=str(path))


# -- pure element functions -------------------------------------------------------------------


def arrhenius_factor(ea_ev: float, temperature_kelvin: float) -> float:
    """sigma(T) / sigma(25 degC) for ``sigma = sigma0 exp(-Ea / kT)``."""
    return math.exp(-ea_ev / K_BOLTZMANN_EV * (1.0 / temperature_kelvin - 1.0 / T_REF_KELVIN))


def vtf_factor(b_kelvin: float, t0_kelvin: float, temperature_kelvin: float) -> float:
    """sigma(T) / sigma(25 degC) for ``sigma = A T^-1/2 exp(-B / (T - T0))``."""
    if temperature_kelvin <= t0_kelvin:
        return 0.0
    return math.sqrt(T_REF_KELVIN / temperature_kelvin) * math.exp(
        -b_kelvin / (temperature_kelvin - t0_kelvin) + b_kelvin / (T_REF_KELVIN - t0_kelvin)
    )


def z_r_cpe(frequency_hertz: np.ndarray, r_ohm: float, q: float, n: float) -> np.ndarray:
    """R in parallel with a CPE, ``Z = R / (1 + R Q (j w)^n)``."""
    s = 2j * np.pi * frequency_hertz
    if math.isinf(r_ohm):  # a frozen electrolyte (VTF below T0): the CPE alone
        return 1.0 / (q * s**n)
    return r_ohm / (1.0 + r_ohm * q * s**n)


def z_warburg_short(frequency_hertz: np.ndarray, r_ohm: float, tau_s: float) -> np.ndarray:
    """Finite transmissive Warburg, ``R tanh(x) / x`` with ``x = sqrt(j w tau)``."""
    if r_ohm == 0:
        return np.zeros_like(frequency_hertz, dtype=complex)
    x = np.sqrt(2j * np.pi * frequency_hertz * tau_s)
    return r_ohm * np.tanh(x) / x


@dataclass
class _State:
    time_s: float
    charge_ah: float  # charge content (SOC x capacity)
    throughput_ah: float = 0.0  # |I| dt
    eta_w_volt: float = 0.0
    temperature_celsius: float = 25.0
    setpoint_celsius: float = 25.0
    pressure_mpa: float = 5.0
    overcurrent_ah: float = 0.0  # charge passed above the CCD
    shorted: bool = False
    mode: Literal["open", "current", "voltage"] = "open"
    set_current_ampere: float = 0.0
    set_voltage_volt: float = 0.0
    limit: float | None = None  # voltage limit (current mode) or current limit (voltage mode)
    current_ampere: float = 0.0
    in_compliance: bool = False
    history: list[tuple[float, str]] = field(default_factory=list)


class SimCell:
    """The simulated cell. Thread-safe; state advances with ``clock.now()``.

    Args:
        params: cell parameters.
        clock: shared simulated clock (default: real time).
        seed: seeds :attr:`rng`, which simulators use for measurement noise.
    """

    #: SOC the state may overshoot to before the steep OCV wall stops it
    SOC_OVERSHOOT = 0.1
    #: slope of the OCV beyond the table's ends, V per unit SOC (the "wall" of a full cell)
    OCV_WALL_V_PER_SOC = 20.0

    def __init__(self, params: CellParams, *, clock: ScaledClock | None = None, seed: int = 0):
        self.params = params
        self.clock = clock if clock is not None else ScaledClock(1.0)
        self.lock = threading.RLock()
        self.rng = np.random.default_rng(seed)
        self._table_soc = np.asarray(params.ocv_soc, dtype=float)
        self._table_volt = np.asarray(params.ocv_volt, dtype=float)
        p = params
        self._s = _State(
            time_s=self.clock.now(),
            charge_ah=p.initial_soc * p.capacity_ah,
            temperature_celsius=p.initial_temperature_celsius,
            setpoint_celsius=p.initial_temperature_celsius,
            pressure_mpa=p.initial_pressure_mpa,
        )

    # -- element values at the present conditions ------------------------------------------
    def _sigma_factor(self, ea_ev: float, t_k: float) -> float:
        p = self.params
        if p.conductivity_model == "vtf":
            return vtf_factor(p.vtf_b_kelvin, p.vtf_t0_kelvin, t_k)
        return arrhenius_factor(ea_ev, t_k)

    def _elements(self) -> dict[str, float]:
        p, s = self.params, self._s
        t_k = s.temperature_celsius + ZERO_CELSIUS
        efc = self._efc()
        geometry = p.thickness_cm / p.area_cm2  # cm^-1
        sigma_b = p.bulk_sigma_s_per_cm * self._sigma_factor(p.bulk_ea_ev, t_k)
        sigma_gb = p.gb_sigma_s_per_cm * self._sigma_factor(p.gb_ea_ev, t_k)
        asr = (
            p.interface_asr_ohm_cm2
            / arrhenius_factor(p.interface_ea_ev, t_k)
            * (p.pressure_ref_mpa / s.pressure_mpa) ** p.pressure_exponent
            * (1.0 + p.interface_growth_per_sqrt_efc * math.sqrt(efc))
        )
        return {
            "temperature_kelvin": t_k,
            "bulk_sigma_s_per_cm": sigma_b,
            "gb_sigma_s_per_cm": sigma_gb,
            "r_bulk_ohm": geometry / sigma_b if sigma_b > 0 else math.inf,
            "r_gb_ohm": geometry / sigma_gb if sigma_gb > 0 else 0.0,
            "interface_asr_ohm_cm2": asr,
            "r_interface_ohm": asr / p.area_cm2,
        }

    def _r_fast(self, e: dict[str, float]) -> float:
        if self._s.shorted:
            return self.params.short_resistance_ohm
        return (
            self.params.series_resistance_ohm
            + e["r_bulk_ohm"]
            + e["r_gb_ohm"]
            + e["r_interface_ohm"]
        )

    def _efc(self) -> float:
        return self._s.throughput_ah / (2.0 * self.params.capacity_ah)

    def _capacity_ah(self) -> float:
        p = self.params
        efc = self._efc()
        lost = p.fade_per_efc * efc + p.knee_fade_per_efc2 * max(0.0, efc - p.knee_efc) ** 2
        return p.capacity_ah * max(0.05, 1.0 - lost)

    def _ocv(self, soc: float) -> float:
        if self._s.shorted or self._table_soc.size == 0:
            return 0.0
        lo, hi = self._table_soc[0], self._table_soc[-1]
        if soc < lo:
            return float(self._table_volt[0] - self.OCV_WALL_V_PER_SOC * (lo - soc))
        if soc > hi:
            return float(self._table_volt[-1] + self.OCV_WALL_V_PER_SOC * (soc - hi))
        return float(np.interp(soc, self._table_soc, self._table_volt))

    # -- integration ---------------------------------------------------------------------------
    def _current_for(self, ocv: float, eta: float, r: float) -> tuple[float, bool]:
        """The current the source drives in the present mode, and whether it is limited."""
        s = self._s
        if s.mode == "open":
            return 0.0, False
        if s.mode == "current":
            current = s.set_current_ampere
            if s.limit is None:
                return current, False
            v = ocv + eta + current * r
            if abs(v) <= s.limit:
                return current, False
            # voltage compliance: the source holds |V| = limit, |I| no more than set
            target = math.copysign(s.limit, v)
            limited = (target - ocv - eta) / r
            bound = abs(current)
            return max(-bound, min(bound, limited)), True
        current = (s.set_voltage_volt - ocv - eta) / r
        assert s.limit is not None
        if abs(current) > s.limit:
            return math.copysign(s.limit, current), True
        return current, False

    def _advance(self) -> None:
        """Integrate the state from its time to ``clock.now()``."""
        now = self.clock.now()
        s, p = self._s, self.params
        remaining = now - s.time_s
        if remaining <= 0:
            return
        tau_w = max(p.warburg_tau_s / 3.0, 1e-9)
        # steps: short against the diffusion lag where the current follows the cell (constant
        # voltage, compliance) and the thermal lag while T moves; SOC moves <= 0.5 % per step;
        # never more than max_steps per call (a long idle gap stays cheap)
        max_steps = 5000
        while remaining > 0:
            e = self._elements()
            r = self._r_fast(e)
            capacity = self._capacity_ah()
            soc = s.charge_ah / capacity
            ocv = self._ocv(soc)
            r_w = 0.0 if s.shorted else p.warburg_r_ohm
            current, limited = self._current_for(ocv, s.eta_w_volt, r)
            dt = remaining
            if s.mode != "open" and current != 0:
                dt = min(dt, 0.005 * capacity * 3600.0 / abs(current))
            if s.mode == "voltage" or limited:
                dt = min(dt, max(tau_w / 5.0, remaining / max_steps))
            if abs(s.temperature_celsius - s.setpoint_celsius) > 1e-3:
                dt = min(dt, max(p.thermal_tau_s / 5.0, remaining / max_steps))
            dt = max(dt, remaining / max_steps)
            density_ma_cm2 = abs(current) * 1e3 / p.area_cm2
            shorts_now = False
            if not s.shorted and density_ma_cm2 > p.ccd_ma_per_cm2:
                # end the step exactly where the charge above the CCD reaches the threshold
                needed_ah = p.short_charge_mah_per_cm2 * p.area_cm2 / 1e3 - s.overcurrent_ah
                if abs(current) * dt / 3600.0 >= needed_ah:
                    dt = min(dt, max(needed_ah, 0.0) * 3600.0 / abs(current))
                    shorts_now = True
            # exact exponential updates for the lags over this step
            decay_w = math.exp(-dt / tau_w)
            s.eta_w_volt = current * r_w + (s.eta_w_volt - current * r_w) * decay_w
            decay_t = math.exp(-dt / p.thermal_tau_s)
            s.temperature_celsius = (
                s.setpoint_celsius + (s.temperature_celsius - s.setpoint_celsius) * decay_t
            )
            dq = current * dt / 3600.0
            low, high = -self.SOC_OVERSHOOT * capacity, (1 + self.SOC_OVERSHOOT) * capacity
            s.charge_ah = min(high, max(low, s.charge_ah + dq))
            s.throughput_ah += abs(dq)
            if not s.shorted and density_ma_cm2 > p.ccd_ma_per_cm2:
                s.overcurrent_ah += abs(dq)
                if shorts_now:
                    s.shorted = True
                    s.eta_w_volt = 0.0
                    s.history.append((s.time_s + dt, "short"))
            s.current_ampere = current
            s.in_compliance = limited
            s.time_s += dt
            remaining -= dt
        s.time_s = now

    def _terminal(self) -> tuple[float, float]:
        s = self._s
        e = self._elements()
        r = self._r_fast(e)
        ocv = self._ocv(s.charge_ah / self._capacity_ah())
        current, limited = self._current_for(ocv, s.eta_w_volt, r)
        s.current_ampere, s.in_compliance = current, limited
        return ocv + s.eta_w_volt + current * r, current

    # -- public API ----------------------------------------------------------------------------
    def set_current(self, current_ampere: float, voltage_limit_volt: float | None = None) -> None:
        """Source a constant current (positive: charge), optionally with |V| compliance."""
        if voltage_limit_volt is not None and not voltage_limit_volt > 0:
            raise ValueError(f"voltage_limit_volt must be > 0, got {voltage_limit_volt!r}")
        with self.lock:
            self._advance()
            s = self._s
            s.mode, s.set_current_ampere, s.limit = (
                "current",
                float(current_ampere),
                (None if voltage_limit_volt is None else float(voltage_limit_volt)),
            )

    def set_voltage(self, voltage_volt: float, current_limit_ampere: float) -> None:
        """Hold the terminal voltage, with |I| compliance ``current_limit_ampere``."""
        if not current_limit_ampere > 0:
            raise ValueError(f"current_limit_ampere must be > 0, got {current_limit_ampere!r}")
        with self.lock:
            self._advance()
            s = self._s
            s.mode, s.set_voltage_volt, s.limit = (
                "voltage",
                float(voltage_volt),
                float(current_limit_ampere),
            )

    def open_circuit(self) -> None:
        """No current flows (the source is off in high impedance)."""
        with self.lock:
            self._advance()
            self._s.mode, self._s.limit = "open", None

    def measure(self) -> tuple[float, float]:
        """(voltage_volt, current_ampere) at ``clock.now()``, noise-free."""
        with self.lock:
            self._advance()
            return self._terminal()

    def impedance(self, frequency_hertz: np.ndarray | float) -> np.ndarray:
        """Analytic small-signal impedance (ohm) at the present T, P and age; noise-free."""
        f = np.atleast_1d(np.asarray(frequency_hertz, dtype=float))
        with self.lock:
            self._advance()
            p, e = self.params, self._elements()
            shorted = self._s.shorted
        z = p.series_resistance_ohm + 2j * np.pi * f * p.inductance_henry
        if shorted:
            return z - p.series_resistance_ohm + p.short_resistance_ohm
        z = z + z_r_cpe(f, e["r_bulk_ohm"], p.bulk_cpe_q, p.bulk_cpe_n)
        if e["r_gb_ohm"] > 0:
            z = z + z_r_cpe(f, e["r_gb_ohm"], p.gb_cpe_q, p.gb_cpe_n)
        z = z + z_r_cpe(f, e["r_interface_ohm"], p.interface_cpe_q, p.interface_cpe_n)
        return z + z_warburg_short(f, p.warburg_r_ohm, p.warburg_tau_s)

    @property
    def temperature_celsius(self) -> float:
        with self.lock:
            self._advance()
            return self._s.temperature_celsius

    @property
    def chamber_setpoint_celsius(self) -> float:
        with self.lock:
            return self._s.setpoint_celsius

    def set_chamber_setpoint(self, celsius: float) -> None:
        """The chamber's set point; the cell follows with ``thermal_tau_s``."""
        if not -100.0 <= celsius <= 300.0:
            raise ValueError(f"chamber set point {celsius!r} degC outside -100..300")
        with self.lock:
            self._advance()
            self._s.setpoint_celsius = float(celsius)

    @property
    def pressure_megapascal(self) -> float:
        with self.lock:
            return self._s.pressure_mpa

    @pressure_megapascal.setter
    def pressure_megapascal(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"stack pressure must be > 0 MPa, got {value!r}")
        with self.lock:
            self._advance()
            self._s.pressure_mpa = float(value)

    @property
    def equivalent_full_cycles(self) -> float:
        with self.lock:
            self._advance()
            return self._efc()

    @property
    def shorted(self) -> bool:
        with self.lock:
            self._advance()
            return self._s.shorted

    @property
    def soc(self) -> float:
        """State of charge against the present (faded) capacity, 0..1 (+/- overshoot)."""
        with self.lock:
            self._advance()
            return self._s.charge_ah / self._capacity_ah()

    @property
    def capacity_ah(self) -> float:
        with self.lock:
            self._advance()
            return self._capacity_ah()

    @property
    def mode(self) -> str:
        with self.lock:
            return self._s.mode

    @property
    def in_compliance(self) -> bool:
        with self.lock:
            self._advance()
            self._terminal()
            return self._s.in_compliance

    def ground_truth(self) -> dict[str, Any]:
        """Parameters, present state and the analytic element values at the present T, P, age.

        ``circuit`` / ``circuit_parameters`` use :mod:`cellbench.analysis.circuits` notation.
        """
        with self.lock:
            self._advance()
            p, s, e = self.params, self._s, self._elements()
            voltage, current = self._terminal()
            capacity = self._capacity_ah()
            circuit = {
                "L0": p.inductance_henry,
                "R0": p.series_resistance_ohm,
                "R1": e["r_bulk_ohm"],
                "CPE1.Q": p.bulk_cpe_q,
                "CPE1.n": p.bulk_cpe_n,
                "R2": e["r_gb_ohm"],
                "CPE2.Q": p.gb_cpe_q,
                "CPE2.n": p.gb_cpe_n,
                "R3": e["r_interface_ohm"],
                "CPE3.Q": p.interface_cpe_q,
                "CPE3.n": p.interface_cpe_n,
                "Ws1.R": p.warburg_r_ohm,
                "Ws1.tau": p.warburg_tau_s,
            }
            return {
                "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(p).items()},
                "time_second": s.time_s,
                "temperature_celsius": s.temperature_celsius,
                "chamber_setpoint_celsius": s.setpoint_celsius,
                "pressure_megapascal": s.pressure_mpa,
                "soc": s.charge_ah / capacity,
                "capacity_ah": capacity,
                "equivalent_full_cycles": self._efc(),
                "ocv_volt": self._ocv(s.charge_ah / capacity),
                "voltage_volt": voltage,
                "current_ampere": current,
                "mode": s.mode,
                "shorted": s.shorted,
                "short_time_second": next((t for t, what in s.history if what == "short"), None),
                "bulk_sigma_s_per_cm": e["bulk_sigma_s_per_cm"],
                "gb_sigma_s_per_cm": e["gb_sigma_s_per_cm"],
                "total_sigma_s_per_cm": p.thickness_cm
                / (p.area_cm2 * (e["r_bulk_ohm"] + e["r_gb_ohm"])),
                "r_bulk_ohm": e["r_bulk_ohm"],
                "r_gb_ohm": e["r_gb_ohm"],
                "r_interface_ohm": e["r_interface_ohm"],
                "interface_asr_ohm_cm2": e["interface_asr_ohm_cm2"],
                "dc_resistance_ohm": self._r_fast(e) + (0.0 if s.shorted else p.warburg_r_ohm),
                "ccd_ma_per_cm2": p.ccd_ma_per_cm2,
                "circuit": "L0-R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)-Ws1",
                "circuit_parameters": circuit,
            }

    def set_soc(self, soc: float) -> None:
        """Put the cell at ``soc`` (0..1) now, relaxed (for tests and scenario set-up)."""
        if not 0.0 <= soc <= 1.0:
            raise ValueError(f"soc must be in 0..1, got {soc!r}")
        with self.lock:
            self._advance()
            self._s.charge_ah = soc * self._capacity_ah()
            self._s.eta_w_volt = 0.0
