"""Equivalent circuits: the string syntax, the element library, and a vectorised model + Jacobian.

Syntax (as impedance.py writes it): ``-`` joins elements in series, ``p(a,b,...)`` puts branches in
parallel, and each element is a kind followed by a number or ``_name``:
``L0-R0-p(R1,CPE1)-p(R2-Wo1,C2)``.

Elements (omega = 2 pi f in rad/s, s = j omega; impedance in ohm):

- ``R``   (R / ohm): R
- ``C``   (C / F): 1 / (s C)
- ``L``   (L / H): s L
- ``CPE`` (Q / F s^(n-1), n in [0, 1]): 1 / (Q s^n)
- ``W``   (sigma / ohm s^-1/2): sigma (1 - j) / sqrt(omega), semi-infinite Warburg
- ``Wo``  (R / ohm, tau / s): R coth(x) / x with x = sqrt(s tau); finite length, open
  (reflective, blocking) boundary
- ``Ws``  (R / ohm, tau / s): R tanh(x) / x with x = sqrt(s tau); finite length, short
  (transmissive) boundary
- ``G``   (R / ohm, tau / s): R / sqrt(1 + s tau), Gerischer
- ``TLM`` (Rion / ohm, Rct / ohm, Q, n): Rion coth(u) / u with u = sqrt(Rion / Zint) and
  Zint = 1 / (1 / Rct + Q s^n); porous electrode (de Levie / Bisquert transmission line,
  reflective end)

The transmission line (TLM) is the de Levie / Bisquert model of a porous electrode with negligible
electronic resistance in the solid phase: ``Rion`` is the total ionic resistance of the electrolyte
in the pores and ``Zint`` the total interfacial impedance of the pore walls (charge-transfer
resistance ``Rct`` in parallel with a double-layer CPE ``Q, n``). At high frequency it tends to
the 45-degree line of ``sqrt(Rion Zint)``, at low frequency to ``Rion / 3 + Zint``; with ``Rct``
very large it is the blocking electrode.

Parameters are named: single-parameter elements by the element name (``R0``, ``C2``, ``L0``,
``W1``), the others as ``name.param`` (``CPE1.Q``, ``CPE1.n``, ``Wo1.R``, ``Wo1.tau``,
``TLM1.Rion``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from cellbench.core.errors import CellbenchError

# kind -> parameter names (in order), longest kinds first so that "CPE1" is not read as "C".
ELEMENT_PARAMS: dict[str, tuple[str, ...]] = {
    "TLM": ("Rion", "Rct", "Q", "n"),
    "CPE": ("Q", "n"),
    "Wo": ("R", "tau"),
    "Ws": ("R", "tau"),
    "W": ("sigma",),
    "R": ("R",),
    "C": ("C",),
    "L": ("L",),
    "G": ("R", "tau"),
}

ELEMENT_UNITS: dict[str, tuple[str, ...]] = {
    "TLM": ("ohm", "ohm", "F s^(n-1)", ""),
    "CPE": ("F s^(n-1)", ""),
    "Wo": ("ohm", "s"),
    "Ws": ("ohm", "s"),
    "W": ("ohm s^-1/2",),
    "R": ("ohm",),
    "C": ("F",),
    "L": ("H",),
    "G": ("ohm", "s"),
}

# Exponents live in [0, 1]; every other parameter is positive.
_EXPONENTS = {"n"}

_NAME = re.compile(r"(TLM|CPE|Wo|Ws|W|R|C|L|G)([0-9_][A-Za-z0-9_]*)$")
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z][A-Za-z0-9_]*)|(?P<punct>[-,()]))")


class CircuitError(CellbenchError, ValueError):
    """A circuit string that cannot be parsed, or parameters that do not match it."""


# ----------------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Element:
    kind: str
    name: str

    @property
    def param_names(self) -> tuple[str, ...]:
        params = ELEMENT_PARAMS[self.kind]
        if len(params) == 1:
            return (self.name,)
        return tuple(f"{self.name}.{p}" for p in params)


@dataclass(frozen=True)
class Series:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Parallel:
    children: tuple[Node, ...]


Node = Element | Series | Parallel


def walk(node: Node) -> Iterator[Element]:
    """The elements of ``node`` in circuit-string order."""
    if isinstance(node, Element):
        yield node
    else:
        for child in node.children:
            yield from walk(child)


# ----------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (type, value, position)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                col = pos + len(text[pos:]) - len(text[pos:].lstrip())
                self.fail(col, f"unexpected character {text[col]!r}")
            kind = "name" if m.group("name") else "punct"
            start = m.start(kind)
            self.tokens.append((kind, m.group(kind), start))
            pos = m.end()
        self.i = 0

    def fail(self, pos: int, msg: str):
        pointer = " " * pos + "^"
        raise CircuitError(
            f"circuit {self.text!r}: {msg} at position {pos + 1}\n  {self.text}\n  {pointer}"
        )

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def expect(self, value: str, what: str) -> None:
        tok = self.peek()
        if tok is None or tok[1] != value:
            pos = tok[2] if tok else len(self.text)
            found = repr(tok[1]) if tok else "end of string"
            self.fail(pos, f"expected {what}, found {found}")
        self.i += 1

    def series(self) -> Node:
        items = [self.term()]
        while (tok := self.peek()) is not None and tok[1] == "-":
            self.i += 1
            items.append(self.term())
        return items[0] if len(items) == 1 else Series(tuple(items))

    def term(self) -> Node:
        tok = self.peek()
        if tok is None:
            self.fail(len(self.text), "expected an element or p(...), found end of string")
        kind, value, pos = tok
        if kind != "name":
            self.fail(pos, f"expected an element or p(...), found {value!r}")
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if value == "p" and nxt is not None and nxt[1] == "(":
            self.i += 2
            branches = [self.series()]
            while (t := self.peek()) is not None and t[1] == ",":
                self.i += 1
                branches.append(self.series())
            self.expect(")", "',' or ')' closing p(")
            if len(branches) < 2:
                self.fail(pos, "p(...) needs at least two branches separated by ','")
            return Parallel(tuple(branches))
        m = _NAME.match(value)
        if not m:
            kinds = ", ".join(sorted(ELEMENT_PARAMS))
            self.fail(
                pos,
                f"unknown element {value!r} (kinds: {kinds}; a kind is followed by a number, "
                "e.g. R0, CPE1, Wo1)",
            )
        self.i += 1
        return Element(m.group(1), value)

    def parse(self) -> Node:
        if not self.tokens:
            raise CircuitError("circuit string is empty")
        node = self.series()
        tok = self.peek()
        if tok is not None:
            self.fail(tok[2], f"unexpected {tok[1]!r} (join elements with '-')")
        return node


# ----------------------------------------------------------------------------------- elements
# Each function returns Z (n,) and dZ/dp (k, n) for the element's k parameters.


def _coth(x: np.ndarray) -> np.ndarray:
    # 1/tanh is exact enough and tanh saturates to 1 without overflow for large Re(x)
    return 1.0 / np.tanh(x)


def _el_R(p, w, s):
    return np.full(w.shape, p[0], dtype=complex), np.ones((1, w.size), dtype=complex)


def _el_C(p, w, s):
    z = 1.0 / (s * p[0])
    return z, (-z / p[0])[None, :]


def _el_L(p, w, s):
    return s * p[0], s[None, :]


def _el_CPE(p, w, s):
    q, n = p
    log_s = np.log(s)
    z = np.exp(-n * log_s) / q
    return z, np.stack((-z / q, -z * log_s))


def _el_W(p, w, s):
    base = (1 - 1j) / np.sqrt(w)
    return p[0] * base, base[None, :]


def _el_Wo(p, w, s):
    r, tau = p
    x = np.sqrt(s * tau)
    ct = _coth(x)
    f = ct / x
    z = r * f
    dz_dtau = r / (2 * tau) * (-(ct * ct - 1.0) - f)  # x/2tau * d(coth x / x)/dx
    return z, np.stack((f + 0j, dz_dtau))


def _el_Ws(p, w, s):
    r, tau = p
    x = np.sqrt(s * tau)
    th = np.tanh(x)
    f = th / x
    z = r * f
    dz_dtau = r / (2 * tau) * ((1.0 - th * th) - f)
    return z, np.stack((f + 0j, dz_dtau))


def _el_G(p, w, s):
    r, tau = p
    a = 1.0 + s * tau
    f = a**-0.5
    z = r * f
    return z, np.stack((f + 0j, -0.5 * r * s * f / a))


def _el_TLM(p, w, s):
    rion, rct, q, n = p
    log_s = np.log(s)
    sn = np.exp(n * log_s)
    zint = 1.0 / (1.0 / rct + q * sn)
    u = np.sqrt(rion / zint)
    ct = _coth(u)
    f = ct / u
    z = rion * f
    dz_du = rion * (-(ct * ct - 1.0) / u - f / u)
    du_drion = u / (2 * rion)
    du_dzint = -u / (2 * zint)
    zint2 = zint * zint
    dzint = np.stack((zint2 / (rct * rct), -zint2 * sn, -zint2 * q * sn * log_s))
    d_rion = f + dz_du * du_drion
    return z, np.vstack((d_rion[None, :], dz_du * du_dzint * dzint))


_ELEMENT_FUNCS: dict[str, Callable] = {
    "R": _el_R,
    "C": _el_C,
    "L": _el_L,
    "CPE": _el_CPE,
    "W": _el_W,
    "Wo": _el_Wo,
    "Ws": _el_Ws,
    "G": _el_G,
    "TLM": _el_TLM,
}


# ----------------------------------------------------------------------------------- circuit


@dataclass(frozen=True)
class Circuit:
    """A parsed circuit: its tree, elements and named parameters; evaluates Z and dZ/dp.

    Build with :func:`parse_circuit` (or ``Circuit.parse``). ``impedance(params, f)`` takes the
    parameters in :attr:`param_names` order as an array, or a mapping by name.
    """

    text: str
    root: Node
    elements: tuple[Element, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(walk(self.root)))

    @classmethod
    def parse(cls, text: str) -> Circuit:
        return parse_circuit(text)

    def __str__(self) -> str:
        return self.text

    @cached_property
    def series_items(self) -> tuple[Node, ...]:
        """The top-level nodes in series (the root alone when it is not a series)."""
        return self.root.children if isinstance(self.root, Series) else (self.root,)

    @cached_property
    def rc_blocks(self) -> tuple[tuple[Element, Element], ...]:
        """Top-level arcs ``p(R, C)`` and ``p(R, CPE)`` as (resistor, capacitor or CPE)."""
        out = []
        for it in self.series_items:
            if not isinstance(it, Parallel) or len(it.children) != 2:
                continue
            kinds = {ch.kind: ch for ch in it.children if isinstance(ch, Element)}
            if len(kinds) == 2 and "R" in kinds and ("C" in kinds or "CPE" in kinds):
                out.append((kinds["R"], kinds.get("C") or kinds["CPE"]))
        return tuple(out)

    @cached_property
    def param_names(self) -> tuple[str, ...]:
        return tuple(n for el in self.elements for n in el.param_names)

    @cached_property
    def param_units(self) -> dict[str, str]:
        out = {}
        for el in self.elements:
            out.update(zip(el.param_names, ELEMENT_UNITS[el.kind], strict=True))
        return out

    @cached_property
    def is_exponent(self) -> np.ndarray:
        """True for parameters bounded to [0, 1] (CPE and TLM exponents)."""
        return np.array([n.rsplit(".", 1)[-1] in _EXPONENTS and "." in n for n in self.param_names])

    @cached_property
    def _offsets(self) -> dict[str, tuple[int, int]]:
        out, i = {}, 0
        for el in self.elements:
            k = len(el.param_names)
            out[el.name] = (i, i + k)
            i += k
        return out

    def element_of(self, param: str) -> Element:
        name = param.split(".", 1)[0]
        for el in self.elements:
            if el.name == name:
                return el
        raise CircuitError(f"circuit {self.text!r} has no element {name!r}")

    def as_array(self, params: Mapping[str, float] | Sequence[float] | np.ndarray) -> np.ndarray:
        """Parameters as an array in :attr:`param_names` order; a mapping must name every one."""
        if isinstance(params, Mapping):
            missing = [n for n in self.param_names if n not in params]
            unknown = [n for n in params if n not in self.param_names]
            if missing or unknown:
                raise CircuitError(
                    f"circuit {self.text!r}: parameters missing {missing}, unknown {unknown}; "
                    f"expected {list(self.param_names)}"
                )
            return np.array([float(params[n]) for n in self.param_names])
        arr = np.asarray(params, dtype=float)
        if arr.shape != (len(self.param_names),):
            raise CircuitError(
                f"circuit {self.text!r} takes {len(self.param_names)} parameters "
                f"{list(self.param_names)}, got {arr.shape}"
            )
        return arr

    def impedance(self, params, frequency_hz) -> np.ndarray:
        """Complex impedance / ohm at ``frequency_hz`` (Z'' negative for capacitive)."""
        z, _ = self.impedance_and_jacobian(params, frequency_hz, jacobian=False)
        return z

    def impedance_and_jacobian(
        self, params, frequency_hz, *, jacobian: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Z (n,) and the analytic dZ/dp (P, n), both complex; rows in :attr:`param_names` order."""
        p = self.as_array(params)
        w = 2 * np.pi * np.asarray(frequency_hz, dtype=float)
        s = 1j * w
        z, blocks = self._eval(self.root, p, w, s)
        if not jacobian:
            return z, None
        jac = np.zeros((p.size, w.size), dtype=complex)
        for i0, i1, dz in blocks:
            jac[i0:i1] = dz
        return z, jac

    def _eval(self, node: Node, p, w, s):
        # returns Z and dZ/dp as blocks [(first row, end row, rows (k, n))]: no stacking per node
        if isinstance(node, Element):
            i0, i1 = self._offsets[node.name]
            z, dz = _ELEMENT_FUNCS[node.kind](p[i0:i1], w, s)
            return z, [(i0, i1, dz)]
        parts = [self._eval(c, p, w, s) for c in node.children]
        if isinstance(node, Series):
            z = parts[0][0].copy()
            for pt in parts[1:]:
                z += pt[0]
            return z, [blk for pt in parts for blk in pt[1]]
        y = 1.0 / parts[0][0]
        for pt in parts[1:]:
            y += 1.0 / pt[0]
        z = 1.0 / y
        # d(1/Y) = Z^2 / Z_i^2 dZ_i for a parameter inside branch i
        blocks = []
        for zi, blks in parts:
            factor = (z / zi) ** 2
            blocks.extend((i0, i1, dz * factor) for i0, i1, dz in blks)
        return z, blocks


def parse_circuit(text: str | Circuit) -> Circuit:
    """Parse a circuit string; errors name the position (1-based) of the offending character."""
    if isinstance(text, Circuit):
        return text
    if not isinstance(text, str):
        raise CircuitError(f"circuit must be a string, got {type(text).__name__}")
    root = _Parser(text).parse()
    seen: dict[str, int] = {}
    for el in walk(root):
        if el.name in seen:
            pos = [m.start() for m in re.finditer(rf"(?<![A-Za-z0-9_]){el.name}\b", text)]
            where = pos[1] + 1 if len(pos) > 1 else 0
            raise CircuitError(
                f"circuit {text!r}: element {el.name!r} appears twice "
                f"(second at position {where}); number elements uniquely"
            )
        seen[el.name] = 1
    return Circuit(text.replace(" ", ""), root)
