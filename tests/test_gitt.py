"""GITT on exact planar-diffusion data with a known D: Weppner–Huggins, the sqrt(t) check and
the relaxation estimate; geometry; the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from diffusion_data import diffusion_voltage, step_response

from cellbench.analysis.gitt import (
    DiffusionGeometry,
    GittError,
    gitt,
    pseudo_ocv,
    weppner_huggins,
)

D, L = 1e-11, 1e-4  # cm2/s, cm: L^2/D = 1000 s
DEDQ = 2.0  # V/C
R = 5.0  # ohm
I = 1e-4  # A


def titration(pulses: int = 4, pulse: float = 10.0, rest: float = 600.0, dt: float = 1.0):
    segments = [(0.0, 60.0)]
    for _ in range(pulses):
        segments += [(I, pulse), (0.0, rest)]
    return diffusion_voltage(segments, d_cm2_s=D, length_cm=L, de_dq_v_per_c=DEDQ, r_ohm=R, dt=dt)


def test_generator_is_the_semi_infinite_solution_at_short_times():
    t = np.array([1.0, 4.0, 9.0])
    short = 2 * np.sqrt(t * L**2 / (np.pi * D))
    assert step_response(t, D, L) == pytest.approx(short, rel=1e-6)


def test_weppner_huggins_sqrt_t_and_relaxation_recover_d():
    per_pulse_ah = I * 10.0 / 3600.0  # each pulse: 1 % of this capacity
    geometry = DiffusionGeometry(thickness_cm=L)
    steps = gitt(titration(), geometry, capacity_ah=per_pulse_ah * 100, initial_soc=0.0)
    assert len(steps) == 4
    for s in steps:
        assert s.pulse_second == pytest.approx(10.0)  # edge to edge
        assert s.ir_drop_volt == pytest.approx(I * R, rel=1e-3)  # rest nearly relaxed
        assert s.delta_es_volt == pytest.approx(DEDQ * I * 10.0, rel=0.02)
        assert s.sqrt_t_linear and s.r2_sqrt_t > 0.999
        assert s.d_weppner_huggins_cm2_per_second == pytest.approx(D, rel=0.02)
        assert s.d_sqrt_t_cm2_per_second == pytest.approx(D, rel=0.02)
        assert s.relaxation_tau_second == pytest.approx(L**2 / (math.pi**2 * D), rel=0.05)
        assert s.d_relaxation_cm2_per_second == pytest.approx(D, rel=0.05)
        assert not s.warnings
    assert [s.soc for s in steps] == pytest.approx([0.0, 0.01, 0.02, 0.03], abs=1e-9)
    ocv = pseudo_ocv(steps)
    assert ocv.height == 4 and ocv["ocv_volt"].is_sorted()


def test_long_pulse_is_flagged_not_linear_in_sqrt_t():
    """A pulse as long as L^2/D: the finite film shows, E(sqrt t) bends, the check says so."""
    steps = gitt(titration(pulses=1, pulse=2000.0, rest=3000.0, dt=5.0),
                 DiffusionGeometry(thickness_cm=L), min_r2=0.999)  # fmt: skip
    assert len(steps) == 1
    assert not steps[0].sqrt_t_linear
    assert any("not linear" in w for w in steps[0].warnings)


def test_short_rest_flags_the_relaxation():
    steps = gitt(titration(pulses=1, rest=150.0), DiffusionGeometry(thickness_cm=L))
    assert any("relaxation" in w for w in steps[0].warnings)


def test_geometries():
    assert DiffusionGeometry(particle_radius_cm=3e-4).length_cm == pytest.approx(1e-4)
    g = DiffusionGeometry(
        molar_volume_cm3_per_mol=20.0, mass_g=0.01, molar_mass_g_per_mol=100.0, area_cm2=1.0
    )
    assert g.length_cm == pytest.approx(2e-3)
    sphere = DiffusionGeometry(particle_radius_cm=1e-4)
    assert sphere.d_from_relaxation(10.0) == pytest.approx(1e-8 / (4.4934**2 * 10), rel=1e-4)
    with pytest.raises(GittError, match="exactly one geometry"):
        DiffusionGeometry()
    with pytest.raises(GittError, match="exactly one geometry"):
        DiffusionGeometry(thickness_cm=1e-4, particle_radius_cm=1e-4)
    with pytest.raises(GittError, match="needs molar_volume"):
        DiffusionGeometry(mass_g=1.0)
    with pytest.raises(GittError, match="positive"):
        DiffusionGeometry(thickness_cm=-1.0)
    assert math.isnan(weppner_huggins(10.0, L, 0.01, 0.0))


def test_cli_gitt_json(tmp_path, capsys):
    from cellbench.cli.main import main

    path = tmp_path / "gitt.csv"
    titration(pulses=2).write_csv(path)
    assert main(["analyze", "gitt", str(path), "--json", "--thickness-cm", str(L)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["steps"]) == 2
    assert out["geometry"]["diffusion_length_cm"] == pytest.approx(L)
    assert out["steps"][0]["d_weppner_huggins_cm2_per_second"] == pytest.approx(D, rel=0.1)
    assert main(["analyze", "gitt", str(path), "--thickness-cm", str(L)]) == 0
    assert "D_WH" in capsys.readouterr().out
    assert main(["analyze", "gitt", str(path)]) != 0
    assert "geometry" in capsys.readouterr().err
