"""Store and forward against a real PostgreSQL server: exactly once through kill -9 and restarts,
live latency, and the command line from sync to analysis."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import psycopg
from lab_runs import make_run

from cellbench.cli.main import main
from cellbench.daq.catalog import Catalog
from cellbench.daq.catalog_run import archived_cover
from cellbench.daq.store import open_run
from cellbench.daq.summaries import PREFIX as SUMMARY_PREFIX
from cellbench.daq.sync import Syncer

CLI = [sys.executable, "-m", "cellbench.cli"]
WRITER = Path(__file__).with_name("lab_runs.py")


def _line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The next line ``proc`` prints, or '' after ``timeout_s``."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return proc.stdout.readline() if ready else ""


def _catalog_rows(url: str, run_id: str, table: str) -> pl.DataFrame:
    with Catalog(url) as cat:
        return cat.rows_from(table, run_id, 0)


def _assert_exact(url: str, run: Path, archive: Path) -> None:
    """Catalog and archive hold exactly the local rows: none lost, none twice."""
    local = open_run(run)
    run_id = local.meta.run_id
    with Catalog(url) as cat:
        counts = cat.run_meta(run_id)[1]
        segs = archived_cover(cat, run_id)
    for table in ("samples", "events"):
        want = local.read(table)
        got = _catalog_rows(url, run_id, table)
        assert counts[table] == want.height
        assert got["row_no"].to_list() == list(range(want.height)), table
        assert got.drop("row_no").equals(want.select(got.columns[1:])), table
        archived = [pl.read_parquet(uri) for *_, uri, _ in segs[table]]
        assert archived, f"{table}: nothing archived"
        assert pl.concat(archived).equals(want), table  # every row sealed and archived once


def test_kill9_and_server_restart_mid_sync_leave_exactly_the_local_rows(
    pg_server,
    catalog_url,
    tmp_path,
    capsys,
):
    root, archive = tmp_path / "runs", tmp_path / "archive"
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), "--channels", "64", "--hz", "20",
         "--seconds", "2.5", "--seal-every", "0.5"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = Path(writer.stdout.readline().split(" ", 1)[1].strip())
    sync_cmd = [*CLI, "sync", str(root), "--catalog", catalog_url["writer"],
                "--archive", str(archive), "--interval", "0.05"]  # fmt: skip
    follower = subprocess.Popen([*sync_cmd, "--follow"], stdout=subprocess.PIPE, text=True)
    assert _line(follower, 30), "the follower printed nothing"  # it has loaded something
    time.sleep(0.4)
    pg_server.restart()  # immediate shutdown: connections cut mid-transaction
    time.sleep(0.6)  # the follower reconnects and goes on
    follower.send_signal(signal.SIGKILL)
    follower.wait()
    for _ in range(2):  # kill -9 again, somewhere in a pass
        again = subprocess.Popen([*sync_cmd, "--follow"], stdout=subprocess.PIPE, text=True)
        _line(again, 1.5)  # killed as it loads, or during a pass that finds nothing new
        again.send_signal(signal.SIGKILL)
        again.wait()
    writer.stdout.read()  # to the writer's end
    assert writer.wait(timeout=60) == 0
    assert main(sync_cmd[3:]) == 0  # sync again (in this process: no start-up cost)
    _assert_exact(catalog_url["reader"], run, archive)
    assert open_run(run).tables()["samples"] > 64 * 20 * 1.5
    # a further sync finds nothing to do
    capsys.readouterr()
    assert main(sync_cmd[3:]) == 0
    assert "samples +0, spectra +0, events +0 rows; 0 segment(s)" in capsys.readouterr().out


def test_live_run_at_64_channels_10_hz_is_in_the_catalog_within_5_s(catalog_url, tmp_path):
    root = tmp_path / "runs"
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), "--channels", "64", "--hz", "10",
         "--seconds", "4", "--seal-every", "2"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = Path(writer.stdout.readline().split(" ", 1)[1].strip())
    stop = threading.Event()
    syncer = Syncer(catalog_url["writer"], str(tmp_path / "archive"))
    thread = threading.Thread(
        target=syncer.follow, args=([run],), kwargs={"interval_s": 0.5, "stop": stop}
    )
    thread.start()
    acks: list[tuple[int, float]] = []  # (rows acknowledged by the writer, when)
    polls: list[tuple[float, int]] = []  # (when, rows the catalog held)
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    reader = threading.Thread(
        target=lambda: acks.extend(
            (int(ln.split()[1]), float(ln.split()[2])) for ln in writer.stdout if ln[:3] == "ack"
        )
    )
    reader.start()
    try:
        with psycopg.connect(catalog_url["reader"], autocommit=True) as conn:
            while reader.is_alive() or (polls and acks and polls[-1][1] < acks[-1][0]):
                have = conn.execute(
                    "SELECT samples_rows FROM cellbench.runs WHERE run_id = %s", (run_id,)
                ).fetchone()
                polls.append((time.time(), have[0] if have else 0))
                if polls[-1][0] - polls[0][0] > 30:
                    break
                time.sleep(0.05)
    finally:
        writer.wait(timeout=60)
        reader.join(timeout=30)
        stop.set()
        thread.join(timeout=30)
        syncer.close()
    lags = [next((t for t, have in polls if have >= n), float("inf")) - t0 for n, t0 in acks]
    assert lags and max(lags) < 5.0, f"slowest batch reached the catalog after {max(lags):.1f} s"


def test_cli_sync_twice_list_and_analyze_equal_local(catalog_url, tmp_path, capsys):
    """The command line in this process (each ``cellbench`` start costs about 2 s here)."""
    root, archive = tmp_path / "runs", tmp_path / "archive"
    run = make_run(root, cycles=4, spectra=True)

    def cli(*args: str) -> str:
        code = main(list(args))
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    def cli_json(*args: str):
        return json.loads(cli(*args))

    sync = ["sync", str(root), "--catalog", catalog_url["writer"], "--archive", str(archive)]
    assert "samples +1600" in cli(*sync)
    assert "samples +0, spectra +0, events +0 rows; 0 segment(s) archived" in cli(*sync)
    run_id = open_run(run).meta.run_id
    remote = cli_json("runs", "list", "--catalog", catalog_url["reader"], "--json",
                      "--where", f"run_id = '{run_id}'")  # fmt: skip
    local = cli_json("runs", "list", str(root), "--json")
    assert [r["rows"] for r in remote] == [r["rows"] for r in local]
    assert remote[0]["rows"] == {"samples": 1600, "spectra": 61, "events": 4}
    assert remote[0]["status"] == local[0]["status"] == "completed"
    a = cli_json("analyze", "cycling", "--catalog", catalog_url["reader"], run_id, "--json")
    b = cli_json("analyze", "cycling", str(run), "--json")
    assert a == b and len(a) == 4
    eis = [cli_json("analyze", "eis", *src, "--circuit", "R0-p(R1,C1)", "--json")
           for src in (["--catalog", catalog_url["reader"], run_id], [str(run)])]  # fmt: skip
    assert eis[0] == eis[1] and eis[0]
    with psycopg.connect(catalog_url["reader"]) as conn:  # summaries and fits went there too
        n = conn.execute(
            "SELECT count(*) FROM cellbench.cycle_summaries WHERE run_id = %s", (run_id,)
        ).fetchone()[0]
        fit = conn.execute(
            "SELECT parameters FROM cellbench.eis_fits WHERE run_id = %s", (run_id,)
        ).fetchall()
    assert n == 4
    assert len(fit) == 1 and abs(fit[0][0]["R1"] - 50.0) < 0.5  # the sweep's R1 is 50 ohm
    # every segment, byte for byte; the segments' min/max summaries (daq/summaries.py) are a
    # reader's index, rebuilt from the rows where missing, and stay with the run folder
    segments = [n for n in os.listdir(run / "samples") if not n.startswith(SUMMARY_PREFIX)]
    assert sorted(os.listdir(archive / run_id / "samples")) == sorted(segments)
    for where, src in (("c", ["--catalog", catalog_url["reader"], run_id]), ("l", [str(run)])):
        cli("runs", "export", *src, "--format", "parquet", "--out", str(tmp_path / where))
    for table in ("samples", "spectra", "events"):
        name = f"{run_id}_{table}.parquet"
        assert pl.read_parquet(tmp_path / "c" / name).equals(pl.read_parquet(tmp_path / "l" / name))
    assert "run id" in cli("runs", "show", "--catalog", catalog_url["reader"], run_id)
