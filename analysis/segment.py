"""Steps and cycles from time, current and voltage, for files that carry none (or wrong ones).

Each sample is classified, then runs of one class become steps:

* **rest**: ``|I| < rest_current_ampere``;
* **charge / discharge** by the sign of the current (positive on charge);
* a new step starts where the sign changes or the current jumps by more than
  ``jump_fraction`` of its size (and more than ``jump_ampere``) from one settled level to
  another: a new C-rate, a pulse edge (a ramping first sample does not make a step);
* within one such run the current is **CC** while it stays within ``cc_tolerance_fraction`` of
  its first value. Where it then drifts (tapers) while the voltage stays within
  ``cv_tolerance_volt``, the rest of the run is a **CV** step; if the voltage moves too, it is
  ``other`` (constant power, a drive cycle). A run whose CC part is shorter than
  ``min_cc_points`` samples is CV throughout (a voltage hold that starts at full current);
* a non-rest step no longer than ``pulse_max_second`` is a **pulse**.

Columns written (replacing any the frame had):

* ``step_type``: ``rest``, ``cc_charge``, ``cv_charge``, ``cc_discharge``, ``cv_discharge``,
  ``pulse_charge``, ``pulse_discharge``, ``other_charge``, ``other_discharge``;
* ``step_count``: running count of steps from 1 (BDF);
* ``step_index``: without a protocol, the step *type* stands in for the protocol step, coded as
  :data:`STEP_INDEX` (rest 0, cc_charge 1, cv_charge 2, cc_discharge 3, ...);
* ``cycle_count``: from 1. A cycle is a charge and a discharge. With ``first="charge"`` (a cell
  charged first; the default) a new cycle starts at the first charge step after a discharge
  step, so rests and anything before the first charge belong to the cycle they follow. With
  ``first="discharge"`` (an anode against lithium) roles swap. Pulses never start a cycle.

Channels are segmented separately; row order is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from cellbench.core.errors import CellbenchError

STEP_TYPES: tuple[str, ...] = (
    "rest",
    "cc_charge",
    "cv_charge",
    "cc_discharge",
    "cv_discharge",
    "pulse_charge",
    "pulse_discharge",
    "other_charge",
    "other_discharge",
)
STEP_INDEX: dict[str, int] = {name: k for k, name in enumerate(STEP_TYPES)}


class SegmentError(CellbenchError):
    """The samples cannot be segmented (missing columns, bad thresholds)."""


@dataclass(frozen=True)
class Thresholds:
    """User-settable thresholds of :func:`segment` (units in the names)."""

    rest_current_ampere: float = 1e-6
    jump_ampere: float = 1e-6
    jump_fraction: float = 0.1
    cc_tolerance_fraction: float = 0.02
    cv_tolerance_volt: float = 0.01
    min_cc_points: int = 3
    pulse_max_second: float = 30.0


def _segment_arrays(
    t: np.ndarray, i: np.ndarray, v: np.ndarray, th: Thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Step number (from 0) and step-type code per sample, for one channel."""
    n = t.size
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sign = np.where(np.abs(i) < th.rest_current_ampere, 0, np.sign(i)).astype(np.int8)
    new = np.zeros(n, dtype=bool)
    new[0] = True
    di = np.abs(np.diff(i))
    bigger = np.maximum(np.abs(i[1:]), np.abs(i[:-1]))
    # A jump starts a step only if the current then settles (the next change is within the CC
    # tolerance): a sparsely logged CV taper falls by more than jump_fraction per sample but
    # never settles, and stays one step.
    settles = np.zeros(n - 1, dtype=bool)  # the last sample alone cannot show it settles
    settles[:-1] = di[1:] <= th.cc_tolerance_fraction * np.abs(i[1:-1]) + th.jump_ampere
    # ... and only from a settled level: the first sample of a step, logged while the current
    # was still ramping, does not make a step of its own.
    was_settled = np.zeros(n - 1, dtype=bool)
    was_settled[1:] = (sign[1:-1] == sign[:-2]) & (
        di[:-1] <= th.cc_tolerance_fraction * np.abs(i[1:-1]) + th.jump_ampere
    )
    jump = (di > th.jump_ampere) & (di > th.jump_fraction * bigger) & (sign[1:] != 0)
    jump &= settles & was_settled
    new[1:] = (sign[1:] != sign[:-1]) | jump
    piece = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    idx = np.arange(n)

    # CC -> CV (or other) split inside each non-rest piece.
    # The CC level is the median of the first samples (the very first may still be ramping);
    # the first sample never counts as a deviation.
    head = np.minimum(starts[:, None] + np.arange(3)[None, :], (ends - 1)[:, None])
    i0 = np.median(i[head], axis=1)[piece]
    dev = (np.abs(i - i0) > th.cc_tolerance_fraction * np.abs(i0)) & (sign != 0)
    dev[starts] = False
    first_dev = np.minimum.reduceat(np.where(dev, idx, n), starts)
    tail = idx >= first_dev[piece]
    v_hi = np.maximum.reduceat(np.where(tail, v, -np.inf), starts)
    v_lo = np.minimum.reduceat(np.where(tail, v, np.inf), starts)
    flat = (v_hi - v_lo) <= th.cv_tolerance_volt
    short_cc = (first_dev - starts) < th.min_cc_points
    # Whole piece is CV when its CC head is too short and its voltage is flat throughout.
    v_hi_all = np.maximum.reduceat(v, starts)
    v_lo_all = np.minimum.reduceat(v, starts)
    all_cv = short_cc & (first_dev < ends) & ((v_hi_all - v_lo_all) <= th.cv_tolerance_volt)

    kind = np.zeros(n, dtype=np.int64)  # 0 rest; 1 cc; 2 cv; 3 other
    kind[sign != 0] = 1
    in_tail = tail & (sign != 0)
    kind[in_tail] = np.where(flat[piece[in_tail]], 2, 3)
    kind[all_cv[piece] & (sign != 0)] = 2
    code = np.full(n, STEP_INDEX["rest"], dtype=np.int64)
    for k_code, name in ((1, "cc"), (2, "cv"), (3, "other")):
        code[(kind == k_code) & (sign > 0)] = STEP_INDEX[f"{name}_charge"]
        code[(kind == k_code) & (sign < 0)] = STEP_INDEX[f"{name}_discharge"]
    # Boundaries: every piece start and every CC -> tail split; then a sparse-logged CV taper
    # (whose current falls by more than jump_fraction between samples) is merged back, as are
    # consecutive rests. Consecutive CC pieces stay apart: they are different currents.
    has_tail = (first_dev < ends) & ~all_cv
    new[first_dev[has_tail]] = True
    same = np.zeros(n, dtype=bool)
    same[1:] = code[1:] == code[:-1]
    mergeable = np.isin(code, [STEP_INDEX[k] for k in STEP_TYPES if not k.startswith("cc_")])
    new &= ~(same & mergeable)
    new[0] = True
    step = np.cumsum(new) - 1

    s_starts = np.flatnonzero(new)
    s_next = np.append(t[s_starts[1:]], t[-1])
    duration = s_next - t[s_starts]
    s_code = code[s_starts]
    s_sign = sign[s_starts]
    # A short non-rest step is a pulse, unless it is the CV tail of a longer CC step.
    prev_code = np.append(-1, s_code[:-1])
    is_tail = np.isin(s_code, [STEP_INDEX["cv_charge"], STEP_INDEX["cv_discharge"]]) & (
        prev_code == s_code - 1
    )
    pulse = (s_sign != 0) & (duration <= th.pulse_max_second) & ~is_tail
    s_code[pulse & (s_sign > 0)] = STEP_INDEX["pulse_charge"]
    s_code[pulse & (s_sign < 0)] = STEP_INDEX["pulse_discharge"]
    return step, s_code[step]


def _cycles(step: np.ndarray, code: np.ndarray, first: Literal["charge", "discharge"]):
    """Cycle number per sample from the sequence of step types."""
    if step.size == 0:
        return np.empty(0, np.int64)
    starts = np.flatnonzero(np.diff(step, prepend=-1) != 0)
    s_code = code[starts]
    charge_codes = {STEP_INDEX[n] for n in ("cc_charge", "cv_charge", "other_charge")}
    discharge_codes = {STEP_INDEX[n] for n in ("cc_discharge", "cv_discharge", "other_discharge")}
    opens, closes = (
        (charge_codes, discharge_codes) if first == "charge" else (discharge_codes, charge_codes)
    )
    cycle = np.empty(starts.size, dtype=np.int64)
    current, seen_close, seen_open = 1, False, False
    for k, c in enumerate(s_code):
        c = int(c)
        if c in opens:
            if seen_close and seen_open:
                current += 1
                seen_close = False
            seen_open = True
        elif c in closes and seen_open:
            seen_close = True
        cycle[k] = current
    return cycle[step]


def segment(
    samples: pl.DataFrame,
    *,
    first: Literal["charge", "discharge"] = "charge",
    thresholds: Thresholds | None = None,
) -> pl.DataFrame:
    """Add ``step_type``, ``step_count``, ``step_index`` and ``cycle_count`` (see module doc).

    Args:
        samples: frame with ``test_time_second`` (s), ``current_ampere`` (A, charge positive)
            and ``voltage_volt`` (V), in time order within each channel.
        first: which half-cycle opens a cycle, ``"charge"`` or ``"discharge"``.
        thresholds: :class:`Thresholds`; the defaults suit mA to A cells logged at ~1 s.
    """
    th = thresholds or Thresholds()
    needed = ("test_time_second", "current_ampere", "voltage_volt")
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise SegmentError(f"segment: missing column(s) {missing}; have {samples.columns}")
    if first not in ("charge", "discharge"):
        raise SegmentError(f"first must be 'charge' or 'discharge', got {first!r}")
    if th.rest_current_ampere < 0 or th.cc_tolerance_fraction <= 0 or th.cv_tolerance_volt < 0:
        raise SegmentError(f"thresholds must be non-negative (and tolerances positive): {th}")
    n = samples.height
    step_all = np.zeros(n, dtype=np.int64)
    code_all = np.zeros(n, dtype=np.int64)
    cycle_all = np.ones(n, dtype=np.int64)
    rows_per_channel = [np.arange(n)]
    if "channel" in samples.columns and samples["channel"].n_unique() > 1:
        codes = samples["channel"].rank("dense").fill_null(0).to_numpy()
        rows_per_channel = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    t_all = samples["test_time_second"].cast(pl.Float64).to_numpy()
    i_all = samples["current_ampere"].cast(pl.Float64).fill_null(0.0).to_numpy()
    v_all = samples["voltage_volt"].cast(pl.Float64).to_numpy()
    i_all = np.where(np.isfinite(i_all), i_all, 0.0)
    for rows in rows_per_channel:
        step, code = _segment_arrays(t_all[rows], i_all[rows], v_all[rows], th)
        step_all[rows] = step + 1
        code_all[rows] = code
        cycle_all[rows] = _cycles(step, code, first)
    index = pl.Series("step_index", code_all, dtype=pl.Int32)
    names = dict(enumerate(STEP_TYPES))
    return samples.with_columns(
        index.replace_strict(names, return_dtype=pl.String).alias("step_type"),
        pl.Series("step_count", step_all, dtype=pl.Int32),
        index,
        pl.Series("cycle_count", cycle_all, dtype=pl.Int32),
    )
