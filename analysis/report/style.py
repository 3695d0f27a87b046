"""One look for every report figure: sizes, fonts, colours, unit scaling and PNG output.

Figures are built on :class:`matplotlib.figure.Figure` directly (never pyplot), so nothing here
touches a global figure registry or needs a display: rendering goes through the Agg canvas and
works on a headless lab PC and in threads. matplotlib is imported inside functions only, so
``import cellbench.analysis`` works without the ``report`` extra.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cellbench.core.errors import CellbenchError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Figure sizes in inches: a full text width (two-column journal page) and a tall variant.
WIDE = (7.0, 4.2)
TALL = (7.0, 6.0)
SQUARE = (5.2, 4.8)
#: PNG resolution: 150 dpi keeps a 7-inch figure sharp on screen and in print drafts, < 300 KB.
DPI = 150

#: Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
BLUE, VERMILION, GREEN, PURPLE, ORANGE, SKY, BLACK, YELLOW = COLORS
DARK = "#222222"  # data points: near-black, softer than pure black
SHADE = "#000000"
SHADE_ALPHA = 0.05

RC: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9.0,
    "legend.fontsize": 8.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "grid.color": "#d9d9d9",
    "grid.linewidth": 0.5,
    "axes.axisbelow": True,
    "axes.spines.top": True,
    "axes.spines.right": True,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": False,
    "ytick.right": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.0,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "axes.prop_cycle": None,  # filled in by _rc() (needs matplotlib's cycler)
    "mathtext.default": "regular",
    "axes.formatter.use_mathtext": True,
    "axes.formatter.limits": (-3, 4),
}


class ReportError(CellbenchError):
    """A report cannot be made from what was given (missing matplotlib, columns, data)."""


def _rc() -> dict[str, Any]:
    from cycler import cycler

    rc = dict(RC)
    rc["axes.prop_cycle"] = cycler(color=list(COLORS))
    return rc


def require_matplotlib() -> None:
    """Raise a :class:`ReportError` naming the extra to install when matplotlib is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError(
            "figures need matplotlib: pip install 'cellbench[report]' (or pip install matplotlib)"
        ) from None


F = TypeVar("F", bound=Callable[..., Any])


def styled(func: F) -> F:
    """Build the figure inside the report style (rcParams are read when artists are made)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require_matplotlib()
        import matplotlib

        with matplotlib.rc_context(_rc()):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(size: tuple[float, float] = WIDE) -> Figure:
    """A Figure with constrained layout (labels never overlap), not registered with pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def png_bytes(fig: Figure, *, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes (Agg canvas; no display needed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": "cellbench"})
    return buf.getvalue()


# ------------------------------------------------------------------------------ unit scaling

_TIME_UNITS = ((1.0, "s"), (60.0, "min"), (3600.0, "h"), (86400.0, "d"))


def time_unit(span_second: float) -> tuple[float, str]:
    """(divisor, unit) that shows a time span of ``span_second`` with readable numbers."""
    if not math.isfinite(span_second) or span_second < 600:
        return _TIME_UNITS[0]
    if span_second < 5 * 3600:
        return _TIME_UNITS[1]
    if span_second < 3 * 86400:
        return _TIME_UNITS[2]
    return _TIME_UNITS[3]


_SI_PREFIXES = ((1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def si_unit(values: np.ndarray | float, unit: str) -> tuple[float, str]:
    """(divisor, prefixed unit) so that the largest ``|value|`` reads between 1 and 1000."""
    a = np.abs(np.asarray(values, dtype=float))
    a = a[np.isfinite(a)]
    peak = float(a.max()) if a.size else 0.0
    if peak == 0.0:
        return 1.0, unit
    for scale, prefix in _SI_PREFIXES:
        if peak >= scale:
            return scale, prefix + unit
    return _SI_PREFIXES[-1][0], _SI_PREFIXES[-1][1] + unit


def si_text(value: float, unit: str, digits: int = 3) -> str:
    """``value`` with an SI prefix, e.g. ``si_text(9980, "Ω")`` -> ``"9.98 kΩ"``."""
    div, prefixed = si_unit(value, unit)
    return f"{value / div:.{digits}g} {prefixed}"


def label(quantity: str, unit: str) -> str:
    """Axis label in the ISO 80000 form ``quantity / unit``."""
    return f"{quantity} / {unit}"


def shade_spans(ax: Axes, starts: np.ndarray, ends: np.ndarray) -> None:
    """Shade every other span (cycles, steps) lightly across the full height of ``ax``."""
    spans = [(float(s), float(e - s)) for s, e in zip(starts[1::2], ends[1::2], strict=True)]
    if spans:
        ax.broken_barh(
            spans,
            (0, 1),
            transform=ax.get_xaxis_transform(),
            facecolor=SHADE,
            alpha=SHADE_ALPHA,
            linewidth=0,
            zorder=0,
        )


def envelope(x: np.ndarray, y: np.ndarray, max_points: int = 20_000):
    """Thin a long trace for plotting without losing spikes: min and max of each bucket."""
    n = x.size
    if n <= max_points:
        return x, y
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    xs = np.empty(2 * buckets)
    ys = np.empty(2 * buckets)
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        seg = y[a:b]
        finite = np.isfinite(seg)
        if not finite.any():
            xs[2 * i : 2 * i + 2] = x[a]
            ys[2 * i : 2 * i + 2] = np.nan
            continue
        lo = a + int(np.nanargmin(seg))
        hi = a + int(np.nanargmax(seg))
        first, second = sorted((lo, hi))
        xs[2 * i], xs[2 * i + 1] = x[first], x[second]
        ys[2 * i], ys[2 * i + 1] = y[first], y[second]
    return xs, ys
