"""Batch reanalysis on a real Dask LocalCluster, reading runs from the archive."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest
from lab_runs import make_run

from cellbench.analysis.cycling import cycle_summary
from cellbench.daq.batch import catalog_tasks, folder_tasks, run_batch, store_summaries
from cellbench.daq.store import open_run
from cellbench.daq.sync import Syncer

pytest.importorskip("distributed", reason="dask[distributed] is in the 'lab' extra")


def test_batch_on_a_local_dask_cluster_skips_a_broken_run(catalog_url, tmp_path):
    root, archive = tmp_path / "runs", tmp_path / "archive"
    runs = [make_run(root, cycles=c, pieces=2) for c in (2, 3, 4)]
    with Syncer(catalog_url["writer"], str(archive)) as s:
        s.sync_once([root])
    ids = [open_run(r).meta.run_id for r in runs]
    # damage one archived segment: that run fails, the others go on
    broken = sorted((archive / ids[1] / "samples").glob("seg-*.parquet"))[0]
    broken.write_bytes(b"not parquet")
    tasks = catalog_tasks(catalog_url["reader"], run_ids=ids)
    seen = []
    results = run_batch(
        tasks, workers=2, processes=False, progress=lambda d, n, r: seen.append((d, n, r.run_id))
    )
    by_id = {r.run_id: r for r in results}
    assert [d for d, _, _ in seen] == [1, 2, 3] and {n for _, n, _ in seen} == {3}
    assert not by_id[ids[1]].ok and by_id[ids[1]].error
    for rid, run in ((ids[0], runs[0]), (ids[2], runs[2])):
        want = cycle_summary(open_run(run).read("samples"), capacity_source="integration")
        assert by_id[rid].ok and by_id[rid].summary.equals(want)
    assert store_summaries(catalog_url["writer"], results) == 2
    with psycopg.connect(catalog_url["reader"]) as conn:
        n = conn.execute(
            "SELECT count(*) FROM cellbench.cycle_summaries WHERE run_id = ANY(%s)", (ids,)
        ).fetchone()[0]
    assert n == 2 + 3 + 4  # the sync stored all three; the batch replaced two in place
    # the same from local folders, in this process
    local = run_batch(folder_tasks([root]))
    assert sorted(r.summary.height for r in local) == [2, 3, 4]


def test_batch_cli_reports_failures(tmp_path):
    root = tmp_path / "runs"
    make_run(root, cycles=2)
    bad = make_run(root, cycles=2)
    for seg in (bad / "samples").glob("seg-*.parquet"):
        seg.write_bytes(b"garbage")
    out = subprocess.run(
        [sys.executable, "-m", "cellbench.cli", "batch", "cycling", str(root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "1 run(s) done, 1 failed" in out.stdout
    assert "[2/2]" in out.stderr and "FAILED" in out.stderr


def test_batch_eis_fits_every_sweep_and_stores_them(catalog_url, tmp_path, capsys):
    from cellbench.cli.main import main

    root = tmp_path / "runs"
    runs = [make_run(root, spectra=True), make_run(root)]  # the second has no spectra
    with Syncer(catalog_url["writer"], str(tmp_path / "archive"), summaries=False) as s:
        s.sync_once([root])
    ids = [open_run(r).meta.run_id for r in runs]
    where = f"run_id IN ('{ids[0]}', '{ids[1]}')"
    code = main(["batch", "eis", "--catalog", catalog_url["writer"], "--where", where,
                 "--circuit", "R0-p(R1,C1)", "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    got = {r["run_id"]: r for r in json.loads(out.out)}
    assert got[ids[1]]["ok"] is False and "no impedance spectra" in got[ids[1]]["error"]
    fit = got[ids[0]]["result"]
    assert got[ids[0]]["ok"] and len(fit) == 1 and abs(fit[0]["R1"] - 50.0) < 0.5
    with psycopg.connect(catalog_url["reader"]) as conn:
        stored = conn.execute(
            "SELECT parameters->>'R1' FROM cellbench.eis_fits "
            "WHERE run_id = %s AND circuit = 'R0-p(R1,C1)'",
            (ids[0],),
        ).fetchall()
    assert len(stored) == 1 and abs(float(stored[0][0]) - 50.0) < 0.5
