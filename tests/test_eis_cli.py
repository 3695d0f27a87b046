"""``cellbench analyze eis``: JSON and table output on files and run folders."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.eis_synth import frequencies, noisy_spectrum
from cellbench.cli.main import main
from cellbench.core.schema import RunMeta, conform

TRUTH = {"R0": 50.0, "R1": 1200.0, "CPE1.Q": 1e-9, "CPE1.n": 0.9, "R2": 3000.0}
TRUTH.update({"CPE2.Q": 2e-5, "CPE2.n": 0.85})
CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)"
F = frequencies(1e6, 0.1, 8)


@pytest.fixture()
def csv_file(tmp_path):
    z = noisy_spectrum(CIRCUIT, TRUTH, F, noise=0.003, rng=np.random.default_rng(1))
    path = tmp_path / "cell.csv"
    np.savetxt(path, np.column_stack((F, z.real, z.imag)), delimiter=",")
    return path


def _run_json(capsys, *argv):
    assert main(["analyze", "eis", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_with_a_given_circuit(capsys, csv_file):
    out = _run_json(capsys, csv_file, "--circuit", CIRCUIT, "--weight", "proportional")
    assert out["circuit"] == CIRCUIT
    assert out["weight"] == "proportional"
    assert set(out["parameters"]) == set(TRUTH)
    assert set(out["parameters"]["CPE1.Q"]) == {"value", "stderr"}
    for name in ("R1", "R2"):
        assert out["parameters"][name]["value"] == pytest.approx(TRUTH[name], rel=0.03)
    # proportional weighting gives the small high-frequency imaginary parts much weight and the
    # real parts little: R0 is the least precise parameter here
    assert out["parameters"]["R0"]["value"] == pytest.approx(TRUTH["R0"], rel=0.15)
    assert out["chi2"] > 0 and out["reduced_chi2"] > 0
    assert "chosen_from" not in out
    assert out["kk"]["passed"] is True


def test_json_chooses_the_circuit_and_says_so(capsys, csv_file):
    out = _run_json(capsys, csv_file)
    assert out["circuit"] == CIRCUIT
    chosen = out["chosen_from"]
    assert chosen["criterion"] == "bic"
    assert len(chosen["candidates"]) >= 5
    best = min(chosen["candidates"], key=lambda c: c["bic"])
    assert best["circuit"] == CIRCUIT and best["resistances_determined"]


@pytest.mark.shared_data
def test_a_dummy_cell_is_not_split_into_arcs_the_data_cannot_tell_apart(capsys, shared_data):
    """Circuit1 is R-(R||C) hardware: a second, overlapping arc lowers BIC a little by splitting
    R0 and R1 into undetermined parts; the choice is the one-arc circuit, resistances determined
    and close to the published 29.1 and 46.7 ohm."""
    out = _run_json(capsys, shared_data / "eis" / "Circuit1_EIS_1.z")
    assert "p(R2" not in out["circuit"]
    by_bic = min(out["chosen_from"]["candidates"], key=lambda c: c["bic"])
    assert not by_bic["resistances_determined"]  # the rule, not plain BIC, made the choice
    r0, r1 = out["parameters"]["R0"]["value"], out["parameters"]["R1"]["value"]
    assert abs(r0 / 29.1 - 1) < 0.03 and abs(r1 / 46.7 - 1) < 0.03
    assert not {"R0", "R1"} & set(out["poorly_determined"])


def test_table_output_and_errors(capsys, csv_file, tmp_path):
    assert main(["analyze", "eis", str(csv_file), "--circuit", CIRCUIT]) == 0
    text = capsys.readouterr().out
    assert "circuit  R0-p(R1,CPE1)-p(R2,CPE2)" in text
    assert "CPE2.n" in text and "Lin-KK   pass" in text
    assert main(["analyze", "eis", str(csv_file), "--circuit", "R0-p(R1,C1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellbench: error: circuit 'R0-p(R1,C1'") and "position 11" in err
    assert main(["analyze", "eis", str(tmp_path / "absent.csv")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_a_run_folder_gives_one_object_per_sweep(capsys, tmp_path):
    from cellbench.daq.store import create_run

    rng = np.random.default_rng(2)
    writer = create_run(tmp_path, RunMeta(run_id="eis-run", start_time="2026-01-01T00:00:00Z"))
    with writer:
        for k in range(3):
            z = noisy_spectrum(CIRCUIT, {**TRUTH, "R2": 3000.0 + 500 * k}, F, noise=0.003, rng=rng)
            df = pl.DataFrame(
                {
                    "channel": "A",
                    "sweep_index": k,
                    "test_time_second": 100.0 * k + np.arange(F.size, dtype=float),
                    "unix_time_second": 1e9 + 100.0 * k + np.arange(F.size, dtype=float),
                    "frequency_hertz": F,
                    "z_real_ohm": z.real,
                    "z_imag_ohm": z.imag,
                    "cycle_count": k + 1,
                }
            )
            writer.append("spectra", conform("spectra", df))
    out = _run_json(capsys, tmp_path / "eis-run", "--circuit", CIRCUIT)
    assert isinstance(out, list) and len(out) == 3
    assert [o["sweep_index"] for o in out] == [0, 1, 2]
    assert [o["cycle_count"] for o in out] == [1, 2, 3]
    r2 = [o["parameters"]["R2"]["value"] for o in out]
    np.testing.assert_allclose(r2, [3000, 3500, 4000], rtol=0.03)


@pytest.mark.shared_data
def test_real_file_with_inductive_points(capsys, shared_data):
    out = _run_json(capsys, shared_data / "eis" / "exampleData.csv")
    assert out["circuit"].startswith("L0-")  # Z'' > 0 at high frequency: an inductance
    out = _run_json(
        capsys,
        shared_data / "eis" / "exampleData.csv",
        "--drop-inductive",
        "--circuit",
        "R0-p(R1,C1)-p(R2-Wo1,C2)",
        "--weight",
        "unit",
    )
    assert out["n_points"] == 57 and out["chi2"] < 1.95e-5  # the published fit's chi2


EIS_FILES = (
    "exampleData.csv",
    "exampleDataBioLogic.mpt",
    "exampleDataGamry.DTA",
    "exampleDataGamryABORT.DTA",
    "exampleDataZPlot.z",
    "Circuit1_EIS_1.z",
    "exampleDataAutolab.txt",
    "exampleDataCHInstruments.txt",
    "exampleDataParstat.txt",
)


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")  # the vendor files' own reader warnings
@pytest.mark.parametrize("name", EIS_FILES)
def test_every_real_format_gives_the_documented_object(capsys, shared_data, name):
    out = _run_json(capsys, shared_data / "eis" / name)
    assert {"circuit", "parameters", "chi2", "reduced_chi2", "weight", "chosen_from"} <= set(out)
    assert out["weight"] == "modulus" and out["n_points"] >= 10
    assert out["circuit"] in [c["circuit"] for c in out["chosen_from"]["candidates"]]
    assert 0 <= out["chi2"] < 2 and out["reduced_chi2"] >= 0
    for name_, p in out["parameters"].items():
        assert set(p) == {"value", "stderr"}, name_
        assert p["value"] is not None and p["value"] >= 0
