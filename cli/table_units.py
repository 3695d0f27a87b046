"""Readable units for the command line's tables: a 2 mAh cell's capacity as ``1.883`` under
``Q_dis/mAh``, not ``0.00188312`` under ``Q_dis/Ah``. JSON output keeps SI units.

One unit per kind of quantity in a table, chosen from the typical (median) magnitude of its
columns, so that the numbers line up and compare at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: SI prefixes tried, largest first: (factor, prefix).
PREFIXES: tuple[tuple[float, str], ...] = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))

#: Time units tried, largest first: (seconds, unit).
TIME_UNITS: tuple[tuple[float, str], ...] = ((86400.0, "d"), (3600.0, "h"), (60.0, "min"))


def _typical(values: Sequence[Any]) -> float | None:
    """Median magnitude of the finite, non-zero numbers in ``values`` (None if there are none)."""
    mags = sorted(
        abs(float(v))
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v != 0
    )
    return mags[len(mags) // 2] if mags else None


def si_unit(values: Sequence[Any], unit: str) -> tuple[float, str]:
    """(factor, unit) to divide ``values`` (in ``unit``, e.g. ``"Ah"``) by: the largest SI prefix
    whose factor the typical value reaches (``"mAh"`` for values around 2e-3 Ah)."""
    typical = _typical(values)
    if typical is None:
        return 1.0, unit
    for factor, prefix in PREFIXES:
        if typical >= factor * (1 - 5e-5):  # 0.99999 Ah reads as 1.000 Ah, not 1000 mAh
            return factor, prefix + unit
    factor, prefix = PREFIXES[-1]
    return factor, prefix + unit


def time_unit(values: Sequence[Any]) -> tuple[float, str]:
    """(seconds per unit, unit) for durations in seconds: d, h, min or s by the typical value."""
    typical = _typical(values)
    for factor, unit in TIME_UNITS:
        if typical is not None and typical >= factor:
            return factor, unit
    return 1.0, "s"


def readable(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    units: Mapping[str, tuple[str, str]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Rows and (key, header) columns with the columns named in ``units`` rescaled.

    ``units`` maps a key to (kind, header stem): kind is an SI unit (``"Ah"``, ``"Wh"``), ``"%"``
    for a fraction shown in percent, or ``"time"`` for seconds; the header becomes
    ``stem/unit``; columns of the same kind share one unit. Columns not in ``units`` and the
    input rows are left as they are.
    """
    out = [dict(r) for r in rows]
    cols = []
    shown = [key for key, _ in columns]
    for key, header in columns:
        if key not in units:
            cols.append((key, header))
            continue
        kind, stem = units[key]
        # columns of one unit share it (charge and discharge capacity compare at a glance)
        same = [k for k in shown if k in units and units[k][0] == kind]
        values = [r.get(k) for r in rows for k in same]
        if kind == "%":
            factor, unit = 0.01, "%"
        elif kind == "time":
            factor, unit = time_unit(values)
        else:
            factor, unit = si_unit(values, kind)
        for r in out:
            v = r.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                r[key] = float(v) / factor
        cols.append((key, f"{stem}/{unit}"))
    return out, cols
