"""Circuit strings, element impedances and the analytic Jacobian."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.analysis.circuits import ELEMENT_PARAMS, CircuitError, parse_circuit

F = np.logspace(-2, 6, 41)


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("R0-p(R1,CPE1", 13, "expected ',' or ')'"),
        ("R0-X1", 4, "unknown element 'X1'"),
        ("R0--R1", 4, "expected an element"),
        ("R0-p(R1)", 4, "at least two branches"),
        ("R0 R1", 4, "join elements with '-'"),
        ("R0-p(R1,C1))", 12, "unexpected ')'"),
        ("R0-p(R1;C1)", 8, "unexpected character ';'"),
        ("R0-CPE", 4, "unknown element 'CPE'"),
    ],
)
def test_parse_errors_name_the_position(text, position, words):
    with pytest.raises(CircuitError) as err:
        parse_circuit(text)
    msg = str(err.value)
    assert words in msg
    assert f"at position {position}" in msg
    # the caret under the offending character
    lines = msg.splitlines()
    assert lines[-1].index("^") - 2 == position - 1


def test_duplicate_element_and_empty_string():
    with pytest.raises(CircuitError, match="'R1' appears twice"):
        parse_circuit("R0-p(R1,C1)-R1")
    with pytest.raises(CircuitError, match="empty"):
        parse_circuit("   ")


def test_named_parameters_in_circuit_order():
    c = parse_circuit("L0-R0-p(R1,CPE1)-p(R2-Wo1,C2)-Ws1-G1-W1-TLM1")
    assert c.param_names == (
        "L0", "R0", "R1", "CPE1.Q", "CPE1.n", "R2", "Wo1.R", "Wo1.tau", "C2",
        "Ws1.R", "Ws1.tau", "G1.R", "G1.tau", "W1", "TLM1.Rion", "TLM1.Rct", "TLM1.Q", "TLM1.n",
    )  # fmt: skip
    assert c.param_units["CPE1.Q"] == "F s^(n-1)" and c.param_units["L0"] == "H"
    assert list(c.is_exponent.nonzero()[0]) == [4, 17]
    assert parse_circuit(" R0 - p( R1 , C1 ) ").text == "R0-p(R1,C1)"


def test_mapping_must_name_every_parameter():
    c = parse_circuit("R0-p(R1,C1)")
    with pytest.raises(CircuitError, match=r"missing \['C1'\].*unknown \['C9'\]"):
        c.impedance({"R0": 1, "R1": 2, "C9": 3}, F)
    with pytest.raises(CircuitError, match="takes 3 parameters"):
        c.impedance([1.0, 2.0], F)


def test_element_impedances_against_closed_forms():
    w = 2 * np.pi * F
    s = 1j * w
    z = parse_circuit("R0-p(R1,C1)").impedance([10, 100, 1e-6], F)
    np.testing.assert_allclose(z, 10 + 100 / (1 + s * 100 * 1e-6), rtol=1e-12)
    z = parse_circuit("CPE1").impedance([2e-3, 0.8], F)
    np.testing.assert_allclose(z, 1 / (2e-3 * s**0.8), rtol=1e-12)
    z = parse_circuit("W1").impedance([5.0], F)
    np.testing.assert_allclose(z, 5 * (1 - 1j) / np.sqrt(w), rtol=1e-12)
    # finite Warburgs: low-frequency limits (open: capacitive R/(s tau) + R/3; short: R)
    z_open = parse_circuit("Wo1").impedance([7.0, 2.0], np.array([1e-7]))[0]
    assert z_open.real == pytest.approx(7 / 3, rel=1e-5)
    assert parse_circuit("Ws1").impedance([7.0, 2.0], np.array([1e-7]))[0].real == pytest.approx(7)
    # Gerischer at high frequency: R / sqrt(s tau)
    zg = parse_circuit("G1").impedance([3.0, 1e-2], np.array([1e9]))[0]
    assert zg == pytest.approx(3 / np.sqrt(1j * 2 * np.pi * 1e9 * 1e-2), rel=1e-6)
    # TLM: low-frequency limit Rion/3 + Rct (Rion << Rct); blocking (huge Rct): 45-degree line
    z_tlm = parse_circuit("TLM1").impedance([30.0, 2e5, 1e-4, 1.0], np.array([1e-9]))[0]
    assert z_tlm.real == pytest.approx(10 + 2e5, rel=1e-7)
    z_hf = parse_circuit("TLM1").impedance([30.0, 1e12, 1e-4, 1.0], np.array([1e3]))[0]
    assert np.angle(z_hf, deg=True) == pytest.approx(-45, abs=0.5)


CIRCUITS = [
    "L0-R0-p(R1,CPE1)-p(R2-Wo1,C2)",
    "R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)",
    "p(R1-Ws1,CPE1)-G1-W1",
    "R0-p(TLM1,R2)",
    "p(p(R1,C1)-R2,L1,CPE1)",
] + [f"{kind}1" for kind in ELEMENT_PARAMS]


@pytest.mark.parametrize("text", CIRCUITS)
def test_jacobian_matches_central_differences(text):
    c = parse_circuit(text)
    rng = np.random.default_rng(len(text))
    p = rng.uniform(0.3, 3.0, len(c.param_names))
    p[c.is_exponent] = rng.uniform(0.6, 0.95, int(c.is_exponent.sum()))
    z, jac = c.impedance_and_jacobian(p, F)
    for i, name in enumerate(c.param_names):
        h = p[i] * 1e-5
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        fd = (c.impedance(up, F) - c.impedance(down, F)) / (2 * h)
        # truncation error O(h^2) relative to dZ/dp, round-off O(eps |Z| / h)
        tol = 1e-7 * np.abs(jac[i]) + 1e-13 * np.abs(z) / h + 1e-300
        worst = np.max(np.abs(fd - jac[i]) / tol)
        assert worst < 1, f"{text}: d/d{name} differs from finite differences"
