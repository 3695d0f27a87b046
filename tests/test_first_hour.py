"""A new user's first hour (issue 17): the demo repeats itself, analysis does not mislead, and
what the commands print reads well."""

from __future__ import annotations

import io
import json
import math
import queue
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from cellbench.analysis.eis_synth import frequencies, noisy_spectrum
from cellbench.cli.main import main
from cellbench.core.schema import RunMeta, conform

FX = Path(__file__).resolve().parents[1] / "fixtures"
DEMO_PROTOCOL = FX / "protocols" / "demo.toml"
DEMO_STATION = FX / "stations" / "demo_station.toml"

F = frequencies(1e6, 0.1, 8)
ONE_ARC = ("R0-p(R1,CPE1)", {"R0": 20.0, "R1": 500.0, "CPE1.Q": 1e-8, "CPE1.n": 0.9})
TWO_ARCS = (
    "R0-p(R1,CPE1)-p(R2,CPE2)",
    {**ONE_ARC[1], "R2": 2000.0, "CPE2.Q": 1e-5, "CPE2.n": 0.85},
)


# ------------------------------------------------------------------------------ the demo repeats


def _short_demo(out: Path, time_scale: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The demo protocol on the demo station, its cycling loop cut to 2 iterations: the cycle
    summary of what it recorded, and its spectra."""
    from cellbench.analysis.cycling import cycle_summary
    from cellbench.daq.session import SessionOptions, prepare
    from cellbench.daq.store import open_run

    setup = SessionOptions(
        time_scale=time_scale, repeatable=True, engine={"max_loop_iterations": 2}
    )
    session = prepare(DEMO_PROTOCOL, DEMO_STATION, out, setup)
    try:
        session.engine.start()
        status = session.engine.wait(timeout=120)
    finally:
        session.close()
    assert status == "completed"
    reader = open_run(session.engine.run_path)
    return cycle_summary(reader.read("samples")), reader.read("spectra")


def test_two_demos_with_the_same_seed_give_identical_cycle_summaries(tmp_path):
    first, spectra_a = _short_demo(tmp_path / "a", 20_000.0)
    # the second one at another time scale while another process takes a CPU: on a simulation
    # driven by the wall clock both change when each sample is taken, and so every capacity
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        second, spectra_b = _short_demo(tmp_path / "b", 100_000.0)
    finally:
        hog.kill()
        hog.wait()
    assert first.height == 2 and first["discharge_capacity_ampere_hour"][0] > 1e-3
    assert first.equals(second)  # every number, to the last bit
    assert spectra_a.drop("unix_time_second").equals(spectra_b.drop("unix_time_second"))


def test_cellbench_demo_asks_for_a_repeatable_session(tmp_path, monkeypatch, capsys):
    import cellbench.cli.demo_summary as demo_summary
    import cellbench.cli.run as run_cli
    import cellbench.daq.session as session_module

    asked = {}

    def fake_prepare(protocol, station, out, setup=None, /, **keywords):
        asked["setup"] = setup
        return SimpleNamespace(engine=SimpleNamespace(run_path=tmp_path / "run1"))

    monkeypatch.setattr(session_module, "prepare", fake_prepare)
    monkeypatch.setattr(run_cli, "drive", lambda session, **kw: ("completed", 0))
    monkeypatch.setattr(demo_summary, "summarise", lambda run_path: ["(summary)"])
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert asked["setup"].repeatable is True
    out = capsys.readouterr().out
    # after the summary: what to try next, on this run
    after = out.split("(summary)", 1)[1]
    for command in ("cellbench runs show", "cellbench report", "cellbench gui"):
        assert command in after
    assert str(tmp_path / "run1") in after


def test_demo_help_agrees_with_itself_about_the_time_scale(capsys):
    from cellbench.cli.run import DEMO_TIME_SCALE

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the station's)" not in text  # the demo does not use the station's
    assert f"--time-scale X simulated stations only: simulated seconds per wall second " \
        f"(default: {DEMO_TIME_SCALE:g})" in text  # fmt: skip
    assert "seed" in text


# --------------------------------------------------------------------- circuits chosen per sweep


def _eis_run(tmp_path: Path, models) -> Path:
    from cellbench.daq.store import create_run

    rng = np.random.default_rng(5)
    writer = create_run(tmp_path, RunMeta(run_id="eis-run", start_time="2026-01-01T00:00:00Z"))
    with writer:
        for k, (circuit, truth) in enumerate(models):
            z = noisy_spectrum(circuit, truth, F, noise=0.003, rng=rng)
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
    return tmp_path / "eis-run"


def _json(capsys, *argv) -> list[dict]:
    assert main(["analyze", "eis", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_sweep_gets_its_own_circuit_and_its_own_numbers(tmp_path, capsys):
    run = _eis_run(tmp_path, [ONE_ARC, TWO_ARCS])
    out = _json(capsys, run)
    assert [o["circuit"] for o in out] == [ONE_ARC[0], TWO_ARCS[0]]
    for o in out:
        rows = {c["circuit"]: c for c in o["chosen_from"]["candidates"]}
        assert rows[o["circuit"]]["bic"] == pytest.approx(o["bic"])  # its own fit's BIC
    bics = [[c["bic"] for c in o["chosen_from"]["candidates"]] for o in out]
    assert bics[0] != bics[1]  # not sweep 0's numbers repeated
    assert "scope" not in out[0]["chosen_from"]


def test_one_circuit_for_a_batch_is_chosen_on_all_sweeps_and_says_so(tmp_path, capsys):
    run = _eis_run(tmp_path, [TWO_ARCS, TWO_ARCS, ONE_ARC])
    out = _json(capsys, run, "--one-circuit")
    assert len({o["circuit"] for o in out}) == 1
    chosen = out[0]["chosen_from"]
    assert chosen["scope"] == "all 3 sweeps together (BIC summed)"
    best = next(c for c in chosen["candidates"] if c["circuit"] == out[0]["circuit"])
    assert best["bic"] == pytest.approx(sum(o["bic"] for o in out))
    assert main(["analyze", "eis", str(run), "--one-circuit"]) == 0
    assert "chosen on all 3 sweeps together" in capsys.readouterr().out


def test_a_value_with_a_standard_error_above_it_is_flagged_undetermined(tmp_path, capsys):
    z = noisy_spectrum(*ONE_ARC, F, noise=0.003, rng=np.random.default_rng(3))
    path = tmp_path / "one_arc.csv"
    np.savetxt(path, np.column_stack((F, z.real, z.imag)), delimiter=",")
    with_w = "R0-p(R1,CPE1)-W1"  # no diffusion in the data: W1 is consistent with zero
    out = _json(capsys, path, "--circuit", with_w)
    w1 = out["parameters"]["W1"]
    assert w1["stderr"] > w1["value"] and out["undetermined"] == ["W1"]
    assert main(["analyze", "eis", str(path), "--circuit", with_w]) == 0
    table = capsys.readouterr().out
    line = next(x for x in table.splitlines() if x.startswith("W1 "))
    assert "undetermined" in line and f"{w1['value']:.5g}" not in line.split("(")[0]
    # choosing, a candidate with an undetermined value loses to the one without it
    chosen = _json(capsys, path)
    assert chosen["circuit"] == ONE_ARC[0] and chosen["undetermined"] == []


def test_the_demo_summary_names_circuits_as_analyze_eis_does(tmp_path, capsys):
    from cellbench.cli.demo_summary import summarise

    run = _eis_run(tmp_path, [ONE_ARC, TWO_ARCS])
    lines = summarise(run)
    analyzed = [o["circuit"] for o in _json(capsys, run)]
    summary = [re.search(r"\[(.+)\]$", x).group(1) for x in lines if x.startswith("  sweep")]
    assert summary == analyzed


# ------------------------------------------------------------------------- analyze cycling units


def test_cycling_table_of_a_2_mah_cell_is_in_mah_and_json_stays_si(tmp_path, capsys):
    from test_cycling import cccv_frame

    df, truths = cccv_frame()
    scale = 0.002 / truths[0]["charge_capacity_ampere_hour"]  # a 2 mAh cell
    small = df.with_columns(pl.col("current_ampere") * scale).drop("channel", strict=False)
    path = tmp_path / "small.csv"
    small.with_columns((pl.col("test_time_second") + 1.7e9).alias("unix_time_second")).write_csv(
        path
    )
    assert main(["analyze", "cycling", str(path), "--capacity-from", "integration"]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0].split()
    assert "Q_ch/mAh" in header and "Q_dis/mAh" in header and "CE/%" in header
    first = dict(zip(header, table.splitlines()[2].split(), strict=True))
    assert 1.0 < float(first["Q_ch/mAh"]) < 3.0  # not 0.0019...
    assert main(["analyze", "cycling", str(path), "--capacity-from", "integration", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["charge_capacity_ampere_hour"] == pytest.approx(
        float(first["Q_ch/mAh"]) / 1e3, rel=1e-4
    )


# ------------------------------------------------------------------------------- runs and output


def _tiny_run(root: Path) -> Path:
    from cellbench.daq.store import create_run

    writer = create_run(root, RunMeta(run_id="r1", start_time="2026-01-01T00:00:00Z"))
    with writer:
        t = np.arange(5, dtype=float)
        writer.append(
            "samples",
            conform(
                "samples",
                pl.DataFrame(
                    {
                        "channel": "A",
                        "test_time_second": t,
                        "unix_time_second": 1.7e9 + t,
                        "voltage_volt": 3.0 + 0.01 * t,
                        "current_ampere": 1e-3,
                        "cycle_count": 1,
                        "step_count": 1,
                        "step_index": 0,
                    }
                ),
            ),
        )
    return root / "r1"


def test_runs_export_writes_beside_the_run_and_prints_full_paths(tmp_path, monkeypatch, capsys):
    run = _tiny_run(tmp_path / "runs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["runs", "export", str(run), "--format", "csv"]) == 0
    printed = [line.split("  (")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed and all(Path(p).is_absolute() and Path(p).is_file() for p in printed)
    assert {Path(p).parent for p in printed} == {(tmp_path / "runs").resolve()}
    assert not list(elsewhere.iterdir())  # nothing dropped where the shell happened to be


def test_resume_of_a_folder_that_does_not_exist_says_so(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "folder"
    assert main(["resume", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"{missing}: no such run folder (it does not exist)" in err
    assert "run.json" not in err


class _FakeEngine:
    """What PlainDisplay reads of an engine: run_path, states and a live bus."""

    def __init__(self, run_path: Path, states: dict):
        self.run_path = run_path
        self.states = states
        self.queue: queue.Queue | None = None

    def subscribe(self, target: queue.Queue):
        self.queue = target
        return SimpleNamespace(close=lambda: None)

    def emit(self, **event) -> None:
        from cellbench.daq.live import LiveMessage

        self.queue.put(LiveMessage("event", event=event))


def _state(**kw) -> SimpleNamespace:
    base = {
        "channel": "cell1",
        "step_index": 12,
        "step_kind": "rest",
        "step_label": "rest 5 min",
        "cycle_count": 20,
        "test_time_second": 2 * 86400 + 9 * 3600 + 33 * 60 + 26.0,
        "voltage_volt": 3.08523,
        "current_ampere": -6.326e-10,
        "temperature_celsius": 25.0,
        "step_remaining_second": None,
    }
    return SimpleNamespace(**{**base, **kw})


def test_plain_output_reads_well_and_comes_in_order(tmp_path):
    from cellbench.cli.display import PlainDisplay

    st = _state()
    engine = _FakeEngine(tmp_path / "run1", {"cell1": st})
    stream = io.StringIO()
    display = PlainDisplay(engine, every_s=3600.0, stream=stream)
    display.start()
    display.update(force=True)
    st.test_time_second += 38.0
    engine.emit(
        kind="run_end", message="run completed", test_time_second=st.test_time_second + 1,
        severity="info", channel=None,
    )  # fmt: skip
    engine.emit(
        kind="alarm", message="voltage 4.36 V above 4.35 V", test_time_second=st.test_time_second,
        severity="alarm", channel="cell1",
    )  # fmt: skip
    display.update()  # the run has ended: its last update, then the final state lines
    display.stop()
    lines = stream.getvalue().splitlines()
    text = "\n".join(lines)
    assert not re.search(r"\[\d*d?\d\d:\d\d:\d\d\]", text)  # no [2d09:33:26] labels
    assert "e-0" not in text and "step_left" not in text and "=-" not in text
    assert lines[1] == (
        "cell1 at 2 d 9 h 33 min: cycle 20, step 12 rest 5 min: 3.0852 V, -632.6 pA, 25.0 °C"
    )
    assert "ALARM: voltage 4.36 V above 4.35 V" in lines[2]
    assert lines[3].startswith("cell1 at 2 d 9 h 34 min: cycle 20")  # the final state
    assert lines[-1] == "run at 2 d 9 h 34 min: run completed"  # the end comes last
    assert text.count(str(tmp_path / "run1")) == 1


def test_plain_status_line_units_and_time_left():
    from cellbench.cli.display import fmt_current, status_line

    assert fmt_current(-0.99999e-3) == "-1.000 mA"  # not -1000 µA
    assert fmt_current(2.5e-6) == "2.500 µA"
    assert fmt_current(math.nan) == "-"
    line = status_line(_state(step_remaining_second=7560.0, current_ampere=-1e-3))
    assert line.endswith("-1.000 mA, 25.0 °C; at most 2 h 06 min left in the step")


TINY = """
name = "tiny"
sample_interval = "10 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "rest"
duration = "10 min"
"""


def test_a_plain_run_prints_its_folder_once(tmp_path, capsys):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(TINY, encoding="utf-8")
    argv = ["run", str(protocol), "--station", str(DEMO_STATION), "--out", str(tmp_path / "runs")]
    started = time.monotonic()
    assert main([*argv, "--name", "t1", "--plain", "--time-scale", "2000"]) == 0
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    assert out.count(str(tmp_path / "runs" / "t1")) == 1, out
    assert out.rstrip().endswith("run completed")


def test_live_table_current_in_a_readable_unit(tmp_path):
    from rich.console import Console

    from cellbench.cli.display import LiveDisplay

    engine = _FakeEngine(tmp_path / "run1", {"cell1": _state()})
    engine.protocol = SimpleNamespace(name="demo")
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=False)
    display = LiveDisplay(engine, console=console)
    console.print(display._table())
    text = buffer.getvalue()
    assert "-632.6 pA" in text and "e-0" not in text


def test_the_report_chooses_its_circuit_on_all_sweeps_not_the_first(tmp_path):
    from cellbench.analysis.report import fit_sweeps
    from cellbench.daq.store import open_run

    run = _eis_run(tmp_path, [ONE_ARC, TWO_ARCS, TWO_ARCS])
    analysis = fit_sweeps(open_run(run).read("spectra"))
    assert analysis.circuit == TWO_ARCS[0]  # the first sweep alone would pick one arc
    assert [f.circuit for f in analysis.fits] == [TWO_ARCS[0]] * 3


CHARGE = """
name = "short charge"
sample_interval = "10 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "cc"
current = "C/5"
until = { time = "20 min" }

[[step]]
type = "rest"
duration = "5 min"
"""


def test_run_repeatable_records_the_same_samples_at_any_time_scale(tmp_path, capsys):
    from cellbench.daq.store import open_run

    protocol = tmp_path / "charge.toml"
    protocol.write_text(CHARGE, encoding="utf-8")
    base = ["run", str(protocol), "--station", str(DEMO_STATION), "--out", str(tmp_path)]
    for name, scale in (("a", "500"), ("b", "20000")):
        argv = [*base, "--name", name, "--plain", "--repeatable", "--time-scale", scale]
        assert main(argv) == 0
    capsys.readouterr()
    a, b = (open_run(tmp_path / n).read("samples").drop("unix_time_second") for n in "ab")
    assert a.height > 100 and a.equals(b)


def test_run_repeatable_is_refused_where_it_cannot_hold(tmp_path, capsys):
    protocol = tmp_path / "charge.toml"
    protocol.write_text(CHARGE, encoding="utf-8")
    emstat = FX / "stations" / "symmetric_station.toml"
    argv = ["run", str(protocol), "--station", str(emstat), "--out", str(tmp_path), "--repeatable"]
    assert main(argv) == 1
    assert "a repeatable run cannot use the simulated" in capsys.readouterr().err
    real = tmp_path / "real.toml"
    real.write_text(
        '[cell]\nnominal_capacity_ah = 0.002\n[[instrument]]\nname = "smu1"\n'
        'driver = "keithley2450"\naddress = "TCPIP::127.0.0.1::5025::SOCKET"\n'
        'roles = ["source"]\nchannel = "cell1"\n',
        encoding="utf-8",
    )
    argv = ["run", str(protocol), "--station", str(real), "--out", str(tmp_path), "--repeatable"]
    assert main(argv) == 1
    assert "a repeatable run needs simulated instruments" in capsys.readouterr().err
