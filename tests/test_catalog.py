"""The lab catalog against a real PostgreSQL server: schema, roles, loads, credentials."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pytest
from lab_runs import make_run
from pg_server import READER, WRITER

from cellbench.cli.main import main
from cellbench.daq.catalog import Catalog, CatalogError, Position, check_url, redact
from cellbench.daq.catalog_admin import init_catalog, prune
from cellbench.daq.catalog_run import fetch_run
from cellbench.daq.pgcopy import PgColumn, copy_chunks
from cellbench.daq.store import open_run
from cellbench.daq.sync import Syncer

CLI = [sys.executable, "-m", "cellbench.cli"]


def test_url_with_password_is_refused_and_never_echoed():
    for url in ("postgresql://pc:s3cret-pw@db/lab", "host=db user=pc password=s3cret-pw"):
        with pytest.raises(CatalogError) as info:
            check_url(url)
        assert "s3cret-pw" not in str(info.value)
    assert "s3cret" not in redact("postgresql://pc:s3cret@db/lab password=s3cret x")


def test_password_file_readable_by_others_is_an_error(tmp_path, monkeypatch):
    passfile = tmp_path / "pgpass"
    passfile.write_text("db:5432:*:pc:pw\n")
    passfile.chmod(0o644)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with pytest.raises(CatalogError, match="chmod 600"):
        check_url("postgresql://pc@db/lab?sslmode=require")
    passfile.chmod(0o600)
    assert check_url("postgresql://pc@db/lab?sslmode=require")["sslmode"] == "require"


def test_migrations_are_versioned_and_idempotent(catalog_url):
    assert init_catalog(catalog_url["admin"]) == []  # the fixture applied version 1 already
    with psycopg.connect(catalog_url["admin"]) as conn:
        versions = conn.execute("SELECT version FROM cellbench.schema_migrations").fetchall()
    assert versions == [(1,), (2,)]


def test_binary_copy_round_trips_nulls_text_and_times(catalog_url):
    df = pl.DataFrame(
        {
            "a": [1.5, None, -2.25, float("inf")],
            "b": [1, None, 3, -4],
            "s": ["", "µ-cell", None, "ch64"],
            "t": [1.7e9, 1.7e9 + 0.5, 946684800.0, 1.8e9 + 1e-6],
        },
        schema={"a": pl.Float64, "b": pl.Int32, "s": pl.String, "t": pl.Float64},
    )
    cols = [
        PgColumn("a", "float8"),
        PgColumn("b", "int4"),
        PgColumn("s", "text"),
        PgColumn("t", "timestamptz"),
    ]
    with psycopg.connect(catalog_url["admin"]) as conn:
        conn.execute("CREATE TEMP TABLE x (a float8, b int4, s text, t timestamptz)")
        with conn.cursor().copy("COPY x FROM STDIN (FORMAT BINARY)") as copy:
            for chunk in copy_chunks(df, cols):
                copy.write(chunk)
        got = conn.execute("SELECT a, b, s, extract(epoch from t)::float8 FROM x").fetchall()
    assert [r[:3] for r in got] == list(zip(df["a"], df["b"], df["s"], strict=True))
    assert np.allclose([r[3] for r in got], df["t"].to_list(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("loader", ["copy", "adbc"])
def test_loads_move_the_position_with_the_rows(catalog_url, tmp_path, loader):
    run = open_run(make_run(tmp_path))
    samples = run.read("samples")
    with Catalog(catalog_url["writer"], loader=loader) as cat:
        cat.upsert_run(run.meta)
        cat.load("samples", run.meta.run_id, samples[:500], before=Position(0, 0),
                 after=Position(1, 500))  # fmt: skip
        # A second load planned on a stale position writes nothing.
        with pytest.raises(CatalogError, match="expected batch 0"):
            cat.load("samples", run.meta.run_id, samples[:500], before=Position(0, 0),
                     after=Position(1, 500))  # fmt: skip
        cat.load("samples", run.meta.run_id, samples[500:], before=Position(1, 500),
                 after=Position(3, samples.height))  # fmt: skip
        back = cat.rows_from("samples", run.meta.run_id, 0)
        assert cat.positions(run.meta.run_id)["samples"] == Position(3, samples.height)
    assert back["row_no"].to_list() == list(range(samples.height))
    assert back.drop("row_no").equals(samples.select(back.columns[1:]))


def test_reader_cannot_write_and_writer_cannot_delete(catalog_url, tmp_path):
    path = make_run(tmp_path)
    with Syncer(catalog_url["writer"], str(tmp_path / "archive")) as s:
        s.sync_once([path])
    run_id = open_run(path).meta.run_id
    with psycopg.connect(catalog_url["reader"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM cellbench.samples").fetchone()[0] > 0
        for sql in (
            "INSERT INTO cellbench.settings VALUES ('x', 'y')",
            f"UPDATE cellbench.runs SET status = 'x' WHERE run_id = '{run_id}'",
            f"DELETE FROM cellbench.samples WHERE run_id = '{run_id}'",
            "SELECT cellbench.ensure_partitions(now(), now())",
            "CREATE TABLE cellbench.mine (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    with psycopg.connect(catalog_url["writer"], autocommit=True) as conn:
        for sql in (
            f"DELETE FROM cellbench.samples WHERE run_id = '{run_id}'",
            f"DELETE FROM cellbench.runs WHERE run_id = '{run_id}'",
            "TRUNCATE cellbench.events",
            "SELECT cellbench.drop_partitions_before(now() + interval '1 year')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    with Catalog(catalog_url["reader"]) as cat:
        assert cat.run_meta(run_id)[1]["samples"] == 1200


def test_catalog_run_with_live_rows_reads_like_the_local_folder(catalog_url, tmp_path):
    path, writer = make_run(tmp_path / "runs", close=False)  # last piece still in the journal
    try:
        with Syncer(catalog_url["writer"], str(tmp_path / "archive")) as s:
            s.sync_once([path])
        folder = fetch_run(catalog_url["reader"], writer.meta.run_id, tmp_path / "fetched")
        local, remote = open_run(path), open_run(folder)
        for table in ("samples", "events"):
            assert remote.read(table).equals(local.read(table)), table
        # two segments came from the archive, the journal's rows from the live window
        assert len(list((folder / "samples").glob("seg-*.parquet"))) == 3
    finally:
        writer.close()


def test_no_password_in_ps_logs_or_run_json(pg_server, catalog_url, tmp_path, monkeypatch, capsys):
    path = make_run(tmp_path / "runs")
    secret = pg_server.passwords[WRITER]
    proc = subprocess.Popen(
        [*CLI, "sync", str(path), "--catalog", catalog_url["writer"], "--archive",
         str(tmp_path / "archive"), "--follow", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()  # the first pass is done: connected and loaded
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
    finally:
        proc.terminate()  # SIGTERM: a clean stop
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "samples +1200" in first
    out = first + out
    # a wrong password: the error says so without printing any password
    bad = tmp_path / "bad-pgpass"
    bad.write_text(f"{pg_server.host}:{pg_server.port}:*:{READER}:not-{secret}\n")
    bad.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(bad))
    capsys.readouterr()
    assert main(["runs", "list", "--catalog", catalog_url["reader"]]) == 1
    failed = capsys.readouterr()
    assert "password authentication failed" in failed.err
    run_json = (path / "run.json").read_text()
    for text in (ps, cmdline, out, err, failed.out, failed.err, run_json):
        assert secret not in text and f"not-{secret}" not in text
    assert json.loads((path / "run.json").read_text())["run_id"]


def test_rows_older_than_the_live_window_stay_in_the_archive_only(catalog_url, tmp_path):
    old = make_run(tmp_path / "runs", t0_unix=time.time() - 40 * 86400)  # recorded 40 days ago
    with Syncer(catalog_url["writer"], str(tmp_path / "archive")) as s:
        assert s.sync_once([old])[0].loaded["samples"] == 1200
    run_id = open_run(old).meta.run_id
    with psycopg.connect(catalog_url["admin"], autocommit=True) as conn:
        live = conn.execute(
            "SELECT count(*) FROM cellbench.samples WHERE run_id = %s", (run_id,)
        ).fetchone()[0]
        # a day partition from 40 days ago, as a PC with a wrong clock might have made
        conn.execute("SELECT cellbench.ensure_partitions(now() - interval '40 days', "
                     "now() - interval '40 days')")  # fmt: skip
        parts = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'cellbench.samples'::regclass"
        before = conn.execute(parts).fetchone()[0]
    assert live == 0  # counted and archived, not in the live window
    with Catalog(catalog_url["reader"]) as cat:
        assert cat.run_meta(run_id)[1]["samples"] == 1200
    folder = fetch_run(catalog_url["reader"], run_id, tmp_path / "fetched")
    assert open_run(folder).read("samples").equals(open_run(old).read("samples"))
    assert prune(catalog_url["admin"]) >= 1
    with psycopg.connect(catalog_url["admin"]) as conn:
        assert conn.execute(parts).fetchone()[0] < before


def test_a_member_of_the_admin_role_prunes_and_migrates(pg_server, catalog_url):
    from cellbench.daq.catalog_admin import create_login

    pg_server.passwords["ops1"] = "ops-pw-1"
    with open(pg_server.passfile, "a") as fh:
        fh.write(f"{pg_server.host}:{pg_server.port}:*:ops1:ops-pw-1\n")
    create_login(catalog_url["admin"], "ops1", "admin", password="ops-pw-1")
    ops = pg_server.url("ops1")
    assert init_catalog(ops) == [] and prune(ops) >= 0
    with psycopg.connect(ops, autocommit=True) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'cellbench' AND tablename = 'runs'"
        ).fetchone()[0]
        assert owner == "cellbench_admin"
        conn.execute("ALTER TABLE cellbench.settings ADD COLUMN note text")  # DDL: owner's right
        conn.execute("ALTER TABLE cellbench.settings DROP COLUMN note")
    with pytest.raises(CatalogError, match="permission denied"):
        prune(catalog_url["writer"])


def test_a_writer_adds_rows_only_to_its_own_runs(pg_server, catalog_url, tmp_path):
    from cellbench.daq.catalog_admin import create_login

    with open(pg_server.passfile, "a") as fh:
        fh.write(f"{pg_server.host}:{pg_server.port}:*:pc2:pc2-pw\n")
    create_login(catalog_url["admin"], "pc2", "writer", password="pc2-pw")
    pc2 = pg_server.url("pc2")
    path = make_run(tmp_path / "runs")
    with Syncer(catalog_url["writer"], str(tmp_path / "archive")) as s:
        s.sync_once([path])
    run_id = open_run(path).meta.run_id
    with Syncer(pc2, str(tmp_path / "archive2")) as s, pytest.raises(CatalogError) as info:
        s.sync_once([path])
    assert f"run {run_id} belongs to {WRITER}, not to pc2" in str(info.value)
    with psycopg.connect(pc2, autocommit=True) as conn:
        for sql in (
            "INSERT INTO cellbench.events (run_id, row_no, t, channel, test_time_second, "
            "unix_time_second, kind, severity, message) "
            f"VALUES ('{run_id}', 999, now(), '', 0, 0, 'note', 'info', 'not mine')",
            f"UPDATE cellbench.sync_position SET rows = 0 WHERE run_id = '{run_id}'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="belongs to"):
                conn.execute(sql)
    with Catalog(catalog_url["reader"]) as cat:
        assert cat.run_meta(run_id)[1] == {"samples": 1200, "spectra": 0, "events": 4}


def test_tls_options_reach_libpq(catalog_url):
    url = catalog_url["reader"]
    with Catalog(url + "?sslmode=disable") as cat:  # the test server has no TLS
        assert cat.list_runs("false") == []
    with pytest.raises(CatalogError, match="SSL"):  # so requiring it fails, and says why
        Catalog(url + "?sslmode=require")
