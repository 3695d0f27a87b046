"""The archive: a folder, and an S3 bucket on moto's server (loopback), both through fsspec."""

from __future__ import annotations

import socket

import polars as pl
import pytest
from lab_runs import make_run

from cellbench.daq.archive import Archive, ArchiveError, sha256_file
from cellbench.daq.catalog_run import fetch_run
from cellbench.daq.store import open_run
from cellbench.daq.sync import Syncer


def _segments(run):
    return sorted((run / "samples").glob("seg-*.parquet"))


def test_folder_archive_verifies_and_replaces_a_cut_copy(tmp_path):
    run = make_run(tmp_path / "runs")
    seg = _segments(run)[0]
    arch = Archive(str(tmp_path / "archive"))
    stored = arch.put_segment(seg, "r1", "samples")
    assert stored.sha256 == sha256_file(seg) and stored.bytes == seg.stat().st_size
    dest = tmp_path / "archive" / "r1" / "samples" / seg.name
    dest.write_bytes(dest.read_bytes()[:100])  # a copy cut short by a crash
    again = arch.put_segment(seg, "r1", "samples")
    assert sha256_file(dest) == again.sha256 == stored.sha256
    assert arch.read_segment(stored.uri).equals(pl.read_parquet(seg))
    dest.write_bytes(b"x" * 10)
    with pytest.raises(ArchiveError, match="does not match its checksum"):
        arch.fetch(stored.uri, tmp_path / "back.parquet", sha256=stored.sha256)
    assert not list((tmp_path / "archive").rglob("*.tmp"))


@pytest.fixture
def s3_bucket(monkeypatch):
    """An S3 endpoint on loopback (moto's server), with a bucket; skips without moto or s3fs."""
    pytest.importorskip("s3fs", reason="s3fs (fsspec's S3) is not installed")
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }.items():
        monkeypatch.setenv(key, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("lab-archive")
    try:
        yield "s3://lab-archive/cellbench"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def test_s3_archive_round_trip(s3_bucket, catalog_url, tmp_path):
    run = make_run(tmp_path / "runs")
    with Syncer(catalog_url["writer"], s3_bucket) as s:
        res = s.sync_once([run])[0]
    local = len(list(run.glob("*/seg-*.parquet")))
    assert res.archived == local == 6 and res.archive_error is None  # samples and events
    run_id = open_run(run).meta.run_id
    arch = Archive(s3_bucket)
    assert arch.list_segments(run_id, "samples") == [p.name for p in _segments(run)]
    folder = fetch_run(catalog_url["reader"], run_id, tmp_path / "fetched")
    assert open_run(folder).read("samples").equals(open_run(run).read("samples"))
