"""Starting values for circuit fits, read from the data so that no user guess is needed.

1. A DRT (:mod:`cellbench.analysis.drt`) gives, without any circuit, the high-frequency intercept,
   the lead inductance (Z'' > 0 at high frequency) and the relaxation times of the arcs (its peaks).
2. The circuit's top-level series items are sorted into: series resistors, inductors, arcs (each
   ``p(...)`` block) and low-frequency tail elements (W, Wo, Ws, G, TLM, a lone C or CPE).
3. For every way of giving the circuit's m arcs m of the candidate time constants (the DRT peaks,
   plus one above and one below the measured band for an arc the data do not show), the
   spectrum is written as a sum that is *linear* in the resistances::

       Z = R_s + j omega L + sum_k R_k / (1 + (j omega tau_k)^n) + tail terms

   and solved by non-negative least squares (residuals relative to |Z|). This takes
   milliseconds for dozens of assignments, and ranks them far better than the peak heights do
   (a broad CPE arc shows as several DRT peaks; a small arc beside a large one can be lower than
   the large one's side lobe).
4. The best assignments become parameter sets: an arc's resistor gets R_k, its C or CPE the value
   that puts the apex at tau_k (``Q = tau^-n / R``); tail elements get the tail's resistance and
   time constant. :func:`initial_guesses` yields them best first.

Arcs are matched to ``p(...)`` blocks in order of appearance, high frequency first, as circuits
are conventionally written.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
from scipy.optimize import nnls

from cellbench.analysis.circuits import Circuit, Element, Parallel, walk
from cellbench.analysis.drt import DRTResult, drt

_TAIL = {"W", "Wo", "Ws", "G", "TLM", "C", "CPE"}
_MAX_CANDIDATE_TAUS = 9
_N_VALUES = (0.9, 0.75)


class _Features:
    """What a circuit-free look at the spectrum gives."""

    def __init__(self, f: np.ndarray, z: np.ndarray, d: DRTResult):
        self.f, self.z, self.d = f, z, d
        self.w = 2 * np.pi * f
        self.w_max, self.w_min = float(self.w.max()), float(self.w.min())
        self.r_hf = max(d.r_inf_ohm, 1e-3 * float(np.min(np.abs(z))))
        self.l_h = d.inductance_henry
        if self.l_h <= 0:  # no visible inductance: a value too small to matter
            self.l_h = 1e-3 * float(np.abs(z[np.argmax(f)])) / self.w_max
        tail_limit = 1 / self.w_min
        tail = [p for p in d.peaks if p.tau_s > tail_limit]
        self.tail_r = float(sum(p.r_ohm for p in tail))
        self.tail_tau = (
            float(
                np.exp(np.average([np.log(p.tau_s) for p in tail], weights=[p.r_ohm for p in tail]))
            )
            if tail
            else 3 / self.w_min
        )
        self.z_lf = z[int(np.argmin(f))]
        total = d.r_polarization_ohm
        self.r_pol = total if total > 0 else float(np.ptp(z.real)) or self.r_hf
        strongest = sorted(d.peaks, key=lambda p: -p.relative)[:_MAX_CANDIDATE_TAUS]
        taus = sorted({p.tau_s for p in strongest})
        # an arc above the band, and one below it, for arcs the data do not show
        self.taus = [0.2 / self.w_max, *taus, 5 / self.w_min]


def _zarc(w: np.ndarray, tau: float, n: float) -> np.ndarray:
    return 1.0 / (1.0 + (1j * w * tau) ** n)


def _tail_column(el: Element, w: np.ndarray, tau: float, n: float) -> np.ndarray:
    """Impedance of a tail element per unit of its linear amplitude, at time constant tau."""
    s = 1j * w
    if el.kind == "W":
        return (1 - 1j) / np.sqrt(w)
    if el.kind == "C":
        return 1.0 / s
    if el.kind == "CPE":
        return 1.0 / s**n
    x = np.sqrt(s * tau)
    if el.kind == "Wo":
        return 1.0 / (np.tanh(x) * x)
    if el.kind == "Ws":
        return np.tanh(x) / x
    if el.kind == "G":
        return 1.0 / np.sqrt(1 + s * tau)
    # TLM, blocking, per unit ionic resistance: coth(u) / u with u^2 = (s tau)^n
    u = (s * tau) ** (n / 2)
    return 1.0 / (np.tanh(u) * u)


def _tail_taus(c: Circuit, feat: _Features) -> list[float]:
    """Time constants to try for tail elements that have one (Wo, Ws, G, TLM)."""
    if not any(
        el.kind in ("Wo", "Ws", "G", "TLM") for el in c.series_items if isinstance(el, Element)
    ):
        return [feat.tail_tau]
    grid = {feat.tail_tau, *(10.0**k / feat.w_min for k in (-2, -1, 0, 1, 2))}
    grid.update(p.tau_s for p in feat.d.peaks)
    return sorted(grid)


class _Ranked:
    """The ranked assignments as a read-only sequence of (relative residual, arcs [(R, tau)],
    linear amplitudes by item); each entry is built when it is read (a fit reads a dozen of the
    hundreds ranked)."""

    def __init__(self, order, rnorms, xs, combos, settings, names, taus):
        self._order, self._rnorms, self._xs = order, rnorms, xs
        self._combos, self._settings, self._names, self._taus = combos, settings, names, taus

    def __len__(self) -> int:
        return int(self._order.size)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> tuple[float, list, dict]:
        j = int(self._order[i])
        x = self._xs[j]
        n_lin = len(self._names)
        amps = dict(zip(self._names, x[:n_lin], strict=True))
        combo = self._combos[j % len(self._combos)]
        arcs = [(float(x[n_lin + k]), float(self._taus[t])) for k, t in enumerate(combo)]
        n, tail_tau = self._settings[j // len(self._combos)]
        return float(self._rnorms[j]), arcs, {**amps, "n": n, "tail_tau": tail_tau}


def _rank_assignments(c: Circuit, feat: _Features, m: int) -> _Ranked:
    """(relative residual, arcs [(R, tau)], linear amplitudes by item) for each assignment,
    best first (see the ordering below)."""
    items = c.series_items
    series_r = [it for it in items if isinstance(it, Element) and it.kind == "R"]
    inductors = [it for it in items if isinstance(it, Element) and it.kind == "L"]
    tails = [it for it in items if isinstance(it, Element) and it.kind in _TAIL]
    w, z = feat.w, feat.z
    wt = 1.0 / np.abs(z)
    b = np.concatenate((z.real * wt, z.imag * wt))
    fixed_cols = []
    names = []
    if series_r:
        fixed_cols.append(np.ones(w.size, dtype=complex))
        names.append("series_r")
    if inductors:
        fixed_cols.append(1j * w * feat.l_h)
        names.append("l_scale")
    names += [el.name for el in tails]
    combos = list(itertools.combinations(range(len(feat.taus)), m)) if m else [()]
    settings = list(itertools.product(_N_VALUES, _tail_taus(c, feat)))
    n_base = len(fixed_cols) + len(tails)
    combo_arr = np.array(combos, dtype=int).reshape(len(combos), m)
    idx = np.hstack((np.broadcast_to(np.arange(n_base), (len(combos), n_base)), n_base + combo_arr))
    all_x, all_r = [], []
    for n, tail_tau in settings:
        tail_cols = [_tail_column(el, w, tail_tau, n) for el in tails]
        arc_cols = [_zarc(w, tau, n) for tau in feat.taus]
        cols = np.array(fixed_cols + tail_cols + arc_cols).T
        a_all = np.vstack((cols.real * wt[:, None], cols.imag * wt[:, None]))
        # scale columns to unit norm: amplitudes span many decades
        norm = np.linalg.norm(a_all, axis=0)
        norm[norm == 0] = 1.0
        a_all = a_all / norm
        xs, rnorms = _batch_nnls(a_all, b, idx)
        all_x.append(xs / norm[idx])
        all_r.append(rnorms)
    xs = np.concatenate(all_x)
    rnorms = np.concatenate(all_r)
    if rnorms.size == 0:
        return _Ranked(np.zeros(0, int), rnorms, xs, combos, settings, names, feat.taus)
    # Assignments that explain the data equally well (within 3 % of the best residual) differ in
    # where they put an arc the data do not show: put it above the band, where the unresolved
    # bulk and grain-boundary arcs of a solid electrolyte are (the fit then reports its split
    # from the series resistance as poorly determined). Ties keep the order of assignment.
    tie = float(np.min(rnorms)) * 1.03
    has_hf = np.array([0 in combo for combo in combos] * len(settings), dtype=bool)
    order = np.lexsort((np.arange(rnorms.size), rnorms, ~has_hf, rnorms > tie))
    return _Ranked(order, rnorms, xs, combos, settings, names, feat.taus)


@functools.cache
def _subsets(k: int, size: int) -> np.ndarray:
    """Every ``size``-subset of ``range(k)``, one per row."""
    return np.array(list(itertools.combinations(range(k), size)), dtype=int)


@functools.lru_cache(maxsize=64)
def _unique_subsets(idx_bytes: bytes, shape: tuple[int, int]) -> tuple:
    """For each subset size, the distinct column subsets of the assignments ``idx`` (rows of
    column indices) and, for every (assignment, subset position), the row of its subset there.

    Assignments share most columns (the series terms, and each tau in many combinations), so a
    few hundred distinct subsets stand behind thousands of (assignment, subset) pairs: each
    distinct normal-equation system is solved once. Keyed by the bytes of ``idx``, which repeat
    for every spectrum fitted with the same circuit and number of DRT peaks."""
    idx = np.frombuffer(idx_bytes, dtype=np.int64).reshape(shape)
    n_sub, k = shape
    out = []
    for size in range(1, k + 1):
        pos = _subsets(k, size)  # (m, size)
        cols = idx[:, pos]  # (n_sub, m, size)
        uniq, inverse = np.unique(cols.reshape(-1, size), axis=0, return_inverse=True)
        out.append((pos, uniq, inverse.reshape(n_sub, pos.shape[0])))
    return tuple(out)


def _batch_nnls(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least squares of ``b`` on the columns ``idx[j]`` of ``a``, for every j.

    The NNLS solution is the unconstrained least-squares solution on its support, and every
    non-negative least-squares solution on a subset of the columns is a feasible point: so the
    NNLS optimum is the best non-negative one among the least-squares solutions on all subsets.
    With a handful of columns (an assignment has at most a few arcs plus the series terms) that
    is a few thousand tiny normal-equation systems, solved at once from the columns' Gram matrix
    instead of one :func:`scipy.optimize.nnls` call per assignment. The residual norms are then
    computed from the residuals themselves. A singular subset falls back to ``nnls``.
    """
    n_sub, k = idx.shape
    if k == 0:
        return np.zeros((n_sub, 0)), np.full(n_sub, float(np.linalg.norm(b)))
    g_full = a.T @ a
    h_full = a.T @ b
    bb = float(b @ b)
    best_r2 = np.full(n_sub, bb)  # the empty subset: x = 0
    xs = np.zeros((n_sub, k))
    rows = np.arange(n_sub)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    try:
        with np.errstate(all="ignore"):
            for pos, uniq, inverse in _unique_subsets(idx.tobytes(), idx.shape):
                # each distinct subset once (identical systems give identical solutions)
                gram = g_full[uniq[:, :, None], uniq[:, None, :]]
                rhs_u = h_full[uniq]
                x_u = np.linalg.solve(gram, rhs_u[..., None])[..., 0]
                r2_u = bb - np.sum(x_u * rhs_u, axis=-1)
                r2_u = np.where(np.all(x_u >= 0, axis=-1) & np.isfinite(r2_u), r2_u, np.inf)
                x = x_u[inverse]  # (n_sub, m, size)
                r2 = r2_u[inverse]
                j = np.argmin(r2, axis=1)
                r2_j = r2[rows, j]
                better = r2_j < best_r2
                full = np.zeros((n_sub, k))
                full[rows[:, None], pos[j]] = x[rows, j]
                xs = np.where(better[:, None], full, xs)
                best_r2 = np.where(better, r2_j, best_r2)
    except np.linalg.LinAlgError:
        out = [nnls(a[:, cols], b, maxiter=20 * k) for cols in idx]
        return np.array([x for x, _ in out]), np.array([r for _, r in out])
    resid = np.einsum("rsk,sk->sr", a[:, idx], xs) - b
    return xs, np.linalg.norm(resid, axis=1)


def _params_from(c: Circuit, feat: _Features, arcs: list, amps: dict) -> dict[str, float]:
    n = amps["n"]
    tail_tau = amps.get("tail_tau", feat.tail_tau)
    items = c.series_items
    floor = 1e-3 * feat.r_hf
    out: dict[str, float] = {}
    arc_items = [it for it in items if isinstance(it, Parallel)]
    for item, (r, tau) in zip(arc_items, arcs, strict=True):
        r = max(r, floor)
        for el in walk(item):
            _arc_element(out, el, r, tau, n, feat)
    series_r = [it for it in items if isinstance(it, Element) and it.kind == "R"]
    for it in series_r:
        out[it.name] = max(amps.get("series_r", feat.r_hf), floor) / len(series_r)
    for it in items:
        if not isinstance(it, Element) or it.kind == "R":
            continue
        if it.kind == "L":
            out[it.name] = feat.l_h * max(amps.get("l_scale", 1.0), 1e-3)
            continue
        a = max(amps.get(it.name, 0.0), 1e-6)
        names = it.param_names
        if it.kind == "W":
            out[names[0]] = a
        elif it.kind == "C":
            out[names[0]] = 1.0 / a
        elif it.kind == "CPE":
            out[names[0]], out[names[1]] = 1.0 / a, n
        elif it.kind in ("Wo", "Ws", "G"):
            out[names[0]], out[names[1]] = max(a, floor), tail_tau
        elif it.kind == "TLM":
            r_ion = max(a, floor)
            # charge transfer: what the low-frequency real part leaves beyond Rion / 3
            r_lf = feat.z_lf.real - amps.get("series_r", feat.r_hf) - r_ion / 3
            out[names[0]], out[names[1]] = r_ion, max(r_lf, 10 * r_ion)
            out[names[2]], out[names[3]] = tail_tau**n / r_ion, n
    for el in c.elements:  # anything deeper in the tree: neutral values from the data
        if any(name not in out for name in el.param_names):
            _arc_element(out, el, feat.r_pol, tail_tau, n, feat)
    return {name: float(out[name]) for name in c.param_names}


def _arc_element(out: dict, el: Element, r: float, tau: float, n: float, feat: _Features) -> None:
    """Value of an element inside an arc of resistance r and time constant tau."""
    names = el.param_names
    k = el.kind
    if k == "R":
        out.setdefault(names[0], r)
    elif k == "C":
        out[names[0]] = tau / r
    elif k == "L":
        out[names[0]] = feat.l_h
    elif k == "CPE":
        out[names[0]], out[names[1]] = tau**n / r, n
    elif k == "W":
        out[names[0]] = max(feat.tail_r, 0.1 * r) * np.sqrt(2 / feat.tail_tau)
    elif k in ("Wo", "Ws", "G"):
        out[names[0]] = feat.tail_r if feat.tail_r > 0 else r
        out[names[1]] = feat.tail_tau
    elif k == "TLM":
        out[names[0]], out[names[1]] = 3 * r, 100 * r
        out[names[2]], out[names[3]] = tau**n / r, n


class Start:
    """One set of starting values; ``residual`` is the relative residual norm of the linear
    model it came from; ``above_band`` says that one of its arcs was put above the band;
    ``held``: the C / CPE parameters that set the above-band arc's tau.

    ``params`` may be given as a function of no arguments: it is called when first read (a fit
    reads the parameters of the few starts it tries, not of every one ranked)."""

    __slots__ = ("_params", "above_band", "held", "residual")

    def __init__(
        self,
        params: dict[str, float] | Callable[[], dict[str, float]],
        residual: float,
        above_band: bool,
        held: tuple[str, ...] = (),
    ):
        self._params = params
        self.residual = residual
        self.above_band = above_band
        self.held = held

    @property
    def params(self) -> dict[str, float]:
        if callable(self._params):
            self._params = self._params()
        return self._params

    def __repr__(self) -> str:
        return (
            f"Start(params={self.params!r}, residual={self.residual!r}, "
            f"above_band={self.above_band!r}, held={self.held!r})"
        )


def _tau_params(c: Circuit, arc_index: int) -> tuple[str, ...]:
    """Names of the C / CPE parameters of the arc_index-th ``p(...)`` block."""
    arc_items = [it for it in c.series_items if isinstance(it, Parallel)]
    return tuple(
        name
        for el in walk(arc_items[arc_index])
        if el.kind in ("C", "CPE")
        for name in el.param_names
    )


def ranked_starts(
    c: Circuit, frequency_hz, z, *, drt_result: DRTResult | None = None, limit: int = 12
) -> list[Start]:
    """Starting values for ``c``, most plausible first."""
    f = np.asarray(frequency_hz, dtype=float)
    zz = np.asarray(z, dtype=complex)
    d = drt_result if drt_result is not None else drt(f, zz)
    feat = _Features(f, zz, d)
    m = sum(isinstance(it, Parallel) for it in c.series_items)
    ranked = _rank_assignments(c, feat, m)
    seen: list[tuple] = []
    out: list[Start] = []
    hf_tau = feat.taus[0]
    for res, arcs, amps in ranked:
        key = (tuple(tau for r, tau in arcs if r > 0), amps["tail_tau"])
        if key in seen:  # same arcs (an empty arc is no different from a missing one)
            continue
        seen.append(key)
        above = [i for i, (_, tau) in enumerate(arcs) if tau == hf_tau]
        held = _tau_params(c, above[0]) if above else ()
        params = functools.partial(_params_from, c, feat, arcs, amps)
        out.append(Start(params, res, bool(above), held))
        if len(out) >= limit:
            break
    # tail time constant one decade either way, from the best assignment
    if ranked:
        res, arcs, amps = ranked[0]
        for factor in (0.1, 10.0):
            shifted = {**amps, "tail_tau": amps["tail_tau"] * factor}
            out.append(Start(_params_from(c, feat, arcs, shifted), res, False))
    return out


def fallback_starts(c: Circuit, frequency_hz, z) -> list[dict[str, float]]:
    """Starts for circuits the structural reading does not cover (resonant or nested parallels):
    every parameter from the median |Z| and one angular frequency, at five points across the
    band."""
    out = []
    w = 2 * np.pi * np.asarray(frequency_hz, dtype=float)
    z_abs = float(np.median(np.abs(np.asarray(z))))
    for w0 in np.geomspace(w.min(), w.max(), 7)[1:-1]:
        p: dict[str, float] = {}
        for el in c.elements:
            names = el.param_names
            k = el.kind
            if k == "R":
                p[names[0]] = z_abs
            elif k == "C":
                p[names[0]] = 1 / (w0 * z_abs)
            elif k == "L":
                p[names[0]] = z_abs / w0
            elif k == "CPE":
                p[names[0]], p[names[1]] = 1 / (w0**0.8 * z_abs), 0.8
            elif k == "W":
                p[names[0]] = z_abs * np.sqrt(w0)
            elif k in ("Wo", "Ws", "G"):
                p[names[0]], p[names[1]] = z_abs, 1 / w0
            else:  # TLM
                p[names[0]], p[names[1]] = z_abs, 10 * z_abs
                p[names[2]], p[names[3]] = 1 / (w0**0.8 * z_abs), 0.8
        out.append(p)
    return out


def initial_guesses(
    c: Circuit, frequency_hz, z, *, drt_result: DRTResult | None = None, limit: int = 12
) -> list[dict[str, float]]:
    """Starting values for ``c`` as parameter dicts, most plausible first."""
    return [s.params for s in ranked_starts(c, frequency_hz, z, drt_result=drt_result, limit=limit)]
