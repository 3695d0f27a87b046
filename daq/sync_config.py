"""A station's ``[sync]`` table: the logger uploads its run to the lab catalog as it records.

```toml
[sync]
catalog = "service=lab"          # or "postgresql://pc7@db.lab/cellbench?sslmode=verify-full"
archive = "/mnt/lab-archive"     # or "s3://bucket/cellbench"
interval_s = 1.0                 # how often new rows are sent (default 1 s)
loader = "copy"                  # or "adbc"
```

The upload runs as its own process (``cellbench sync RUN --follow --until-done``), started once
the run folder exists: acquisition never waits on the network, and a dead network, server or
sync process only delays the upload (the run folder is the buffer; the next sync resumes). Its
output goes to ``RUN/sync.log``. No password belongs here: the URL is refused if it holds one
(libpq reads it from ``PGPASSFILE`` or the service file of the user the logger runs as).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellbench.daq.catalog_schema import LOADERS
from cellbench.daq.toml_check import Checker, Invalid, KeyPath, Table, text_value

SYNC_LOG = "sync.log"


@dataclass(frozen=True)
class SyncConfig:
    catalog: str
    archive: str
    interval_s: float = 1.0
    loader: str = "copy"

    def command(self, run_path: Path) -> list[str]:
        """The ``cellbench sync`` command line (no secret: passwords are libpq's business)."""
        return [
            sys.executable, "-m", "cellbench.cli", "sync", str(run_path),
            "--catalog", self.catalog, "--archive", self.archive, "--follow", "--until-done",
            "--interval", repr(self.interval_s), "--loader", self.loader,
        ]  # fmt: skip


def _catalog_url(value: Any) -> str:
    text = text_value(value)
    try:
        from cellbench.daq.catalog import CatalogError, check_url
    except ImportError:  # pragma: no cover - the lab extra is missing
        raise Invalid("needs the 'lab' extra: pip install 'cellbench[lab]'") from None
    try:
        check_url(text)
    except CatalogError as exc:
        raise Invalid(str(exc)) from None
    return text


def _interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or not 0.05 <= value <= 3600:
        raise Invalid(f"must be between 0.05 and 3600 s, got {value!r}")
    return float(value)


def _loader(value: Any) -> str:
    text = text_value(value)
    if text not in LOADERS:
        raise Invalid(f"must be one of {', '.join(LOADERS)}, got {text!r}")
    return text


def check_sync_table(checker: Checker, data: Any, path: KeyPath) -> SyncConfig | None:
    """Check a station's ``[sync]`` table (None: absent) into ``checker``."""
    if data is None:
        return None
    if not isinstance(data, dict):
        checker.error(path, "must be a table [sync] (catalog, archive)")
        return None
    table = Table(checker, data, path)
    catalog = table.need("catalog", _catalog_url, 'e.g. catalog = "service=lab"')
    archive = table.need("archive", text_value, 'e.g. archive = "/mnt/lab-archive"')
    interval = table.get("interval_s", _interval, 1.0)
    loader = table.get("loader", _loader, "copy")
    table.finish()
    if table.failed or catalog is None or archive is None:
        return None
    return SyncConfig(catalog, archive, interval, loader)


def from_run(run_path: Path) -> SyncConfig | None:
    """The ``[sync]`` table of the station a run was recorded with (from its run.json)."""
    try:
        meta = json.loads((Path(run_path) / "run.json").read_text(encoding="utf-8"))
        text = (meta.get("station") or {}).get("text") or ""
        raw = tomllib.loads(text).get("sync") if text else None
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or "catalog" not in raw or "archive" not in raw:
        return None
    return SyncConfig(
        str(raw["catalog"]),
        str(raw["archive"]),
        float(raw.get("interval_s", 1.0)),
        str(raw.get("loader", "copy")),
    )


def start_for_run(run_path: Path) -> subprocess.Popen | None:
    """Start the upload of a run whose station has ``[sync]``; None if it has none.

    The process has its own session (a Ctrl-C meant for the logger does not cut the upload
    short); it ends by itself once the run is closed and everything is uploaded.
    """
    config = from_run(run_path)
    if config is None:
        return None
    log = open(Path(run_path) / SYNC_LOG, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            config.command(run_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
