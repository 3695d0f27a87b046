"""Safety limits: the run-wide window every sample must stay in, tightened by a step's own limits.

The limits themselves are :class:`cellbench.daq.protocol.Limits` (``[safety]`` of the protocol,
``limits`` of a step, combined with ``Limits.merged``). A breach is reported here and acted on by
the engine: it puts every output of the run in its safe state (:func:`all_safe`: in parallel, the
breaching instrument's first), records an alarm event and marks the run ``aborted``.

A reading that cannot be shown to be inside the window is a breach: a NaN or infinite value of a
limited quantity (a dead sensor, an over-range reply), and a reading gone stale (an auxiliary
sampler reports NaN once its reading is older than its ``stale_after_s``). Quantities that have
no instrument on a channel are not checked (the caller passes None).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from cellbench.daq.link import InstrumentLink
from cellbench.daq.protocol import Limits


@dataclass(frozen=True)
class Breach:
    """Which limit, the value seen and the bound."""

    quantity: str  # "voltage", "current", "temperature", "pressure"
    value: float
    bound: float
    limit: str  # name of the Limits field

    @property
    def message(self) -> str:
        unit = {"voltage": "V", "current": "A", "temperature": "degC", "pressure": "MPa"}
        u = unit.get(self.quantity, "")
        if not math.isfinite(self.value):
            return (
                f"no valid {self.quantity} reading ({self.value}: sensor failed or reading stale); "
                f"limit {self.bound:.6g} {u} cannot be shown to hold"
            )
        side = "below" if "_min_" in self.limit else "above"
        return f"{self.quantity} {self.value:.6g} {u} {side} limit {self.bound:.6g} {u}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "value": self.value,
            "bound": self.bound,
            "limit": self.limit,
        }


def check(
    limits: Limits,
    *,
    voltage_volt: float | None = None,
    current_ampere: float | None = None,
    temperature_celsius: float | None = None,
    pressure_megapascal: float | None = None,
) -> Breach | None:
    """The first breached limit, or None. A non-finite reading of a bounded quantity is a breach:
    a NaN voltage cannot be shown to be inside the window."""
    v, i, t, p = voltage_volt, current_ampere, temperature_celsius, pressure_megapascal
    lim = limits
    if v is not None:
        if lim.voltage_max_volt is not None and not v <= lim.voltage_max_volt:
            return Breach("voltage", v, lim.voltage_max_volt, "voltage_max_volt")
        if lim.voltage_min_volt is not None and not v >= lim.voltage_min_volt:
            return Breach("voltage", v, lim.voltage_min_volt, "voltage_min_volt")
    if (
        i is not None
        and lim.current_max_ampere is not None
        and not abs(i) <= lim.current_max_ampere
    ):
        return Breach("current", i, lim.current_max_ampere, "current_max_ampere")
    tmax = lim.temperature_max_celsius
    if t is not None and tmax is not None and not t <= tmax:  # NaN (dead, stale) breaches
        return Breach("temperature", t, tmax, "temperature_max_celsius")
    pmax = lim.pressure_max_megapascal
    if p is not None and pmax is not None and not p <= pmax:
        return Breach("pressure", p, pmax, "pressure_max_megapascal")
    pmin = lim.pressure_min_megapascal
    if p is not None and pmin is not None and not p >= pmin:
        return Breach("pressure", p, pmin, "pressure_min_megapascal")
    return None


SAFE_WAIT_S = 5.0  # wall s: the longest an abort waits for the instruments to report safe


def all_safe(
    links: Iterable[InstrumentLink],
    *,
    first: InstrumentLink | None = None,
    block_wait_s: float = 0.2,
    wait_s: float = SAFE_WAIT_S,
) -> dict[str, BaseException | None]:
    """Put every link's instrument in its safe state at once, one thread each, ``first`` (the
    breaching instrument) started first; returns each link's error (None: safe).

    Each link first refuses new output-on commands and waits up to ``block_wait_s`` for one in
    flight, then calls ``safe_state()``. Done in parallel, the time until every output is off is
    that of the slowest instrument, not the sum: one slow or silent instrument (a query in
    flight up to its timeout) delays only itself. Waits at most ``wait_s`` in all; a link still
    busy then is reported as a TimeoutError (its thread goes on trying).
    """
    order = list(links)
    if first is not None and first in order:
        order.remove(first)
        order.insert(0, first)
    for link in order:
        link.blocked = True
    results: dict[str, BaseException | None] = {}

    def make_safe(link: InstrumentLink) -> None:
        if block_wait_s > 0:
            link.block(wait_s=block_wait_s)
        results[link.name] = link.safe_state()

    threads = []
    for link in order:
        if link is first:  # no wait for the gate: its runner is the one that saw the breach
            thread = threading.Thread(target=lambda lk=link: _safe_now(lk, results), daemon=True)
        else:
            thread = threading.Thread(target=make_safe, args=(link,), daemon=True)
        thread.name = f"cellbench-safe-{link.name}"
        thread.start()
        threads.append((link, thread))
    deadline = time.monotonic() + wait_s
    for link, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            results[link.name] = TimeoutError(f"{link.name}: not safe after {wait_s:g} s")
    return results


def _safe_now(link: InstrumentLink, results: dict[str, BaseException | None]) -> None:
    results[link.name] = link.safe_state()


def describe(limits: Limits) -> str:
    """``voltage_min_volt=2.5, ...`` for the bounds that are set."""
    parts = [
        f"{f.name}={getattr(limits, f.name):g}"
        for f in fields(limits)
        if getattr(limits, f.name) is not None
    ]
    return ", ".join(parts) or "none"
