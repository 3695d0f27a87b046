"""Driver names as written in station files, and :func:`open_instrument`.

Entries are ``"module:Class"`` strings imported on first use, so listing the drivers (or opening
one) never imports the others' dependencies. Every driver class takes
``(address, *, name="", timeout_s=..., transport=None, **options)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from cellbench.core.errors import CellbenchError

DRIVERS: dict[str, str] = {
    "keithley2450": "cellbench.drivers.keithley2450:Keithley2450",
    "e4990a": "cellbench.drivers.e4990a:KeysightE4990A",
    "im3590": "cellbench.drivers.hioki_im3590:HiokiIM3590",
    "bt3562": "cellbench.drivers.hioki_bt3562:HiokiBT3562",
    "emstat": "cellbench.drivers.palmsens_emstat:PalmSensEmStat",
    "espec": "cellbench.drivers.espec:EspecChamber",
    "mark10": "cellbench.drivers.mark10:Mark10Gauge",
    "press": "cellbench.drivers.press:MotorisedPress",
    "maccor": "cellbench.drivers.maccor:MaccorChannel",
    "neware": "cellbench.drivers.neware:NewareChannel",
}


class UnknownDriverError(CellbenchError, KeyError):
    """A station names a driver (or simulator) that cellbench does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def resolve(spec: str) -> Any:
    """Import ``"package.module:Attribute"`` and return the attribute."""
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def load_driver(driver: str) -> type:
    """The driver class registered as ``driver`` (e.g. ``"keithley2450"``)."""
    try:
        spec = DRIVERS[driver]
    except KeyError:
        raise UnknownDriverError(
            f"unknown driver {driver!r}; known drivers: {', '.join(sorted(DRIVERS))}"
        ) from None
    return resolve(spec)


def open_instrument(
    driver: str,
    address: str,
    *,
    name: str = "",
    timeout_s: float | None = None,
    **options: Any,
) -> Any:
    """Open ``address`` with the driver registered as ``driver``; returns the driver instance.

    ``timeout_s`` (None: the driver's default) bounds every reply; ``options`` are the
    driver-specific keyword arguments (a station's ``[instrument.options]``).
    """
    cls = load_driver(driver)
    kwargs: dict[str, Any] = dict(options)
    if timeout_s is not None:
        kwargs["timeout_s"] = timeout_s
    return cls(address, name=name, **kwargs)
