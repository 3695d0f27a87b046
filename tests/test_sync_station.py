"""A station's [sync] table: checked with lines, and the logger uploading its run as it records."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellbench.daq.catalog import Catalog
from cellbench.daq.station import StationError, parse_station
from cellbench.daq.store import open_run
from cellbench.daq.sync_config import SyncConfig

FX = Path(__file__).resolve().parents[1] / "fixtures"
STATION = FX / "stations" / "demo_station.toml"
PROTOCOL = """
name = "short charge"
sample_interval = "2 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "cc"
current = "C/5"
until = { time = "20 min" }
"""


def _station_text(sync: str) -> str:
    text = STATION.read_text(encoding="utf-8").replace('cell = "../sim/', f'cell = "{FX}/sim/')
    return text + "\n" + sync


def test_sync_table_is_checked_with_lines():
    good = parse_station(
        _station_text('[sync]\ncatalog = "service=lab"\narchive = "/mnt/a"\n'), path=STATION
    )
    assert good.raw["sync"]["catalog"] == "service=lab"
    with pytest.raises(StationError) as info:
        parse_station(
            _station_text(
                '[sync]\ncatalog = "postgresql://pc:hunter2@db/lab"\narchive = "/a"\n'
                "intervall_s = 2\nloader = 'odbc'\n"
            ),
            path=STATION,
        )
    text = str(info.value)
    assert "hunter2" not in text
    assert "sync.catalog: the catalog URL holds a password" in text
    assert "did you mean 'interval_s'" in text and "sync.loader: must be one of" in text
    lines = [ln for ln in text.splitlines()[1:]]
    assert all(ln.split(":")[1].isdigit() for ln in lines), text


def test_logger_uploads_its_run_through_station_sync(pg_server, catalog_url, tmp_path):
    station = tmp_path / "station.toml"
    station.write_text(
        _station_text(
            f'[sync]\ncatalog = "{catalog_url["writer"]}"\narchive = "{tmp_path / "archive"}"\n'
            "interval_s = 0.2\n"
        )
    )
    protocol = tmp_path / "short.toml"
    protocol.write_text(PROTOCOL)
    out = subprocess.run(
        [sys.executable, "-m", "cellbench.cli", "run", str(protocol), "--station", str(station),
         "--out", str(tmp_path / "runs"), "--plain"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "sync: uploading to the lab catalog" in out.stdout
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    local = open_run(run)
    deadline = time.monotonic() + 60
    with Catalog(catalog_url["reader"]) as cat:
        while True:
            meta, counts = cat.run_meta(local.meta.run_id) if _known(cat, local) else (None, {})
            if meta is not None and meta.status == "completed" and counts == local.tables():
                break
            assert time.monotonic() < deadline, (run / "sync.log").read_text()
            time.sleep(0.2)
    assert SyncConfig(catalog_url["writer"], "x").command(run)[-1] == "copy"
    pid = int(re.search(r"\(pid (\d+)\)", out.stdout).group(1))
    while True:  # the uploader ends itself once everything is uploaded
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            break
        if stat.split(") ")[-1][:1] == "Z":  # it has ended; its parent is gone
            break
        assert time.monotonic() < deadline + 30, "the sync process did not end"
        time.sleep(0.1)
    log = (run / "sync.log").read_text()
    assert "samples +" in log and pg_server.passwords["lab_pc1"] not in log


def _known(cat: Catalog, local) -> bool:
    return bool(cat.list_runs(f"run_id = '{local.meta.run_id}'"))
