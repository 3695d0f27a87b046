"""The lab-wide PostgreSQL catalog: connection, bulk loads, and the queries sync and readers use.

Credentials are found the libpq way and nowhere else: a service file (``service=lab`` in the URL,
``PGSERVICEFILE``), a password file (``PGPASSFILE`` or ``~/.pgpass``, mode 0600), or the
environment (``PGUSER``, ``PGHOST``...). A URL holding a password is refused before anything
connects, so a password never reaches a command line, ``run.json``, a log line or an error
message; TLS options (``sslmode``, ``sslrootcert``...) pass through to libpq unchanged.

Rows travel in bulk as binary COPY (psycopg 3, encoded with numpy by :mod:`.pgcopy`) or through
ADBC's PostgreSQL driver (``loader="adbc"``); ``bench/sync.py`` measures both. Each load is one
transaction that also advances the table's sync position, so a load is either wholly in the
catalog with its position, or not at all.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cellbench.core import schema
from cellbench.core.errors import CellbenchError
from cellbench.core.schema import RunMeta
from cellbench.daq.catalog_schema import LOADERS, SCHEMA, current_version, latest_version
from cellbench.daq.pgcopy import PgColumn, copy_chunks

_PGTYPE = {pl.Float64(): "float8", pl.Int32(): "int4", pl.String(): "text", pl.Int64(): "int8"}
_SECRET_RE = re.compile(r"(password\s*=\s*)('[^']*'|\S+)|(://[^:/@\s]+:)([^@\s]+)(@)", re.I)


class CatalogError(CellbenchError):
    """The catalog cannot be reached or refuses an operation; never includes a secret."""


class PositionConflict(CatalogError):
    """The catalog's sync position is not what this load planned on (another sync moved it)."""


def redact(text: str) -> str:
    """``text`` with anything that looks like a password replaced by ``***``."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return f"{m.group(1)}***"
        return f"{m.group(3)}***{m.group(5)}"

    return _SECRET_RE.sub(sub, text)


def check_url(url: str) -> dict[str, str]:
    """Parse a libpq URL or keyword string; refuse one that carries a password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Exception as exc:
        raise CatalogError(f"bad catalog URL {redact(url)!r}: {redact(str(exc))}") from None
    if params.get("password"):
        raise CatalogError(
            "the catalog URL holds a password: keep it in PGPASSFILE (mode 0600) or a "
            "pg_service.conf entry instead, never on a command line or in a station file"
        )
    _check_passfile(params)
    return params


def _check_passfile(params: dict[str, str]) -> None:
    """libpq silently ignores a password file others can read; say so instead."""
    name = params.get("passfile") or os.environ.get("PGPASSFILE")
    path = Path(name) if name else Path.home() / ".pgpass"
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CatalogError(
            f"{path}: password file is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"libpq ignores it: chmod 600 {path}"
        )


def describe(url: str) -> str:
    """Where a URL points, for messages: user@host:port/dbname (or the service name)."""
    try:
        p = check_url(url)
    except CatalogError:
        return "<catalog>"
    if "service" in p:
        return f"service {p['service']}"
    host = p.get("host") or os.environ.get("PGHOST", "localhost")
    port = p.get("port") or os.environ.get("PGPORT", "5432")
    db = p.get("dbname") or os.environ.get("PGDATABASE", "")
    user = p.get("user") or os.environ.get("PGUSER", "")
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


def connect(url: str, *, connect_timeout_s: int = 10, autocommit: bool = True):
    """A psycopg connection to the catalog (credentials from libpq's files and environment)."""
    import psycopg

    check_url(url)
    try:
        return psycopg.connect(
            url,
            connect_timeout=connect_timeout_s,
            application_name="cellbench",
            autocommit=autocommit,
        )
    except psycopg.Error as exc:
        first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise CatalogError(f"cannot connect to the catalog at {describe(url)}: {first}") from None


def _data_columns(table: str) -> list[PgColumn]:
    cols = [PgColumn("run_id", "text"), PgColumn("row_no", "int8"), PgColumn("t", "timestamptz")]
    cols += [PgColumn(c.name, _PGTYPE[c.dtype]) for c in schema.COLUMNS[table]]
    return cols


def with_keys(table: str, df: pl.DataFrame, run_id: str, first_row: int) -> pl.DataFrame:
    """``df`` (one of a run's tables, conformed) with run_id, row_no and t in front."""
    names = [c.name for c in schema.COLUMNS[table]]
    missing = [n for n in names if n not in df.columns]
    df = df.with_columns([pl.lit(None, dtype=schema.schema(table)[n]).alias(n) for n in missing])
    return df.select(
        pl.lit(run_id).alias("run_id"),
        pl.int_range(first_row, first_row + df.height, dtype=pl.Int64).alias("row_no"),
        pl.col("unix_time_second").alias("t"),
        *names,
    )


@dataclass(frozen=True)
class Position:
    """How much of one table of one run the catalog holds: batches < next_seq, ``rows`` rows."""

    next_seq: int
    rows: int


class Catalog:
    """One connection to the catalog. Not thread-safe: one per thread or process."""

    def __init__(self, url: str, *, loader: str = "copy", connect_timeout_s: int = 10):
        if loader not in LOADERS:
            raise CatalogError(f"loader must be one of {LOADERS}, got {loader!r}")
        self.url = url
        self.loader = loader
        self.conn = connect(url, connect_timeout_s=connect_timeout_s)
        self._adbc = None
        version = current_version(self.conn)
        if version == 0:
            self.close()
            raise CatalogError(
                f"{describe(url)}: no cellbench catalog here; run 'cellbench catalog init' first"
            )
        if version > latest_version():
            self.close()
            raise CatalogError(
                f"{describe(url)}: catalog schema version {version} is newer than this "
                f"cellbench knows ({latest_version()}); upgrade cellbench"
            )

    def close(self) -> None:
        for c in (self.conn, self._adbc):
            if c is not None:
                with contextlib.suppress(Exception):  # a broken connection must not mask errors
                    c.close()
        self._adbc = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------- runs

    def upsert_run(self, meta: RunMeta, *, archive: str = "") -> None:
        """Insert or update a run's row from its ``run.json``; create its sync positions."""
        m = meta.to_dict()
        extra = m.get("extra") or {}
        row = {
            "run_id": meta.run_id,
            "status": meta.status,
            "start_time": meta.start_time or None,
            "end_time": meta.end_time or None,
            "cell_name": meta.cell.name or "",
            "chemistry": meta.cell.chemistry or "",
            "station": str((meta.station or {}).get("name", "")),
            "pc": str(extra.get("host", "")),
            "protocol": str((meta.protocol or {}).get("name", "")),
            "software_version": meta.software_version or "",
            "meta": json.dumps(m, default=str),
            "archive": archive,
        }
        cols = list(row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "run_id")
        with self.conn.transaction():
            self.conn.execute(
                f"INSERT INTO {SCHEMA}.runs ({', '.join(cols)}, synced_at) "
                f"VALUES ({', '.join('%(' + c + ')s' for c in cols)}, now()) "
                f"ON CONFLICT (run_id) DO UPDATE SET {updates}, synced_at = now()",
                row,
            )
            for table in schema.TABLES:
                self.conn.execute(
                    f"INSERT INTO {SCHEMA}.sync_position VALUES (%s, %s, 0, 0) "
                    "ON CONFLICT DO NOTHING",
                    (meta.run_id, table),
                )

    def positions(self, run_id: str) -> dict[str, Position]:
        rows = self.conn.execute(
            f"SELECT tbl, next_seq, rows FROM {SCHEMA}.sync_position WHERE run_id = %s", (run_id,)
        ).fetchall()
        return {t: Position(int(s), int(n)) for t, s, n in rows}

    def live_window_days(self) -> float:
        row = self.conn.execute(
            f"SELECT value FROM {SCHEMA}.settings WHERE key = 'live_window_days'"
        ).fetchone()
        return float(row[0]) if row else 7.0

    # ------------------------------------------------------------------------------ loads

    def load(
        self,
        table: str,
        run_id: str,
        df: pl.DataFrame,
        *,
        before: Position,
        after: Position,
        live_cutoff_unix_s: float | None = None,
    ) -> int:
        """Load ``df`` (rows ``before.rows..after.rows-1`` of the table) and move the position.

        One transaction: the position is checked to still be ``before`` (else
        :class:`PositionConflict`, nothing written), rows are copied, the position becomes
        ``after``. ``samples`` rows older than ``live_cutoff_unix_s`` are not copied (they are
        in the archive; the live window would drop them anyway) but are counted. Returns the
        rows copied.
        """
        if df.height != after.rows - before.rows:
            raise CatalogError(f"{table}: {df.height} rows do not span {before} .. {after}")
        keyed = with_keys(table, df, run_id, before.rows)
        if table == "samples" and live_cutoff_unix_s is not None:
            keyed = keyed.filter(pl.col("t") >= live_cutoff_unix_s)
        if self.loader == "adbc" and keyed.height:
            return self._load_adbc(table, run_id, keyed, before, after)
        with self.conn.transaction():
            self._check_and_lock(self.conn, table, run_id, before)
            if keyed.height:
                if table == "samples":
                    self._ensure_partitions(self.conn, keyed)
                cols = _data_columns(table)
                names = ", ".join(c.name for c in cols)
                from psycopg.copy import QueuedLibpqWriter

                cur = self.conn.cursor()
                with cur.copy(
                    f"COPY {SCHEMA}.{table} ({names}) FROM STDIN (FORMAT BINARY)",
                    writer=QueuedLibpqWriter(cur),  # sends while the next chunk is encoded
                ) as copy:
                    for chunk in copy_chunks(keyed, cols):
                        copy.write(chunk)
            self._set_position(self.conn, table, run_id, after)
            self._set_rows(self.conn, table, run_id, after.rows)
            if table == "samples" and df.height:
                self._update_channels(run_id, df)
        return keyed.height

    def _check_and_lock(self, conn, table: str, run_id: str, before: Position) -> None:
        row = conn.execute(
            f"SELECT next_seq, rows FROM {SCHEMA}.sync_position "
            "WHERE run_id = %s AND tbl = %s FOR UPDATE",
            (run_id, table),
        ).fetchone()
        got = Position(int(row[0]), int(row[1])) if row else Position(0, 0)
        if got != before:
            raise PositionConflict(
                f"run {run_id} {table}: the catalog is at batch {got.next_seq} / row {got.rows}, "
                f"expected batch {before.next_seq} / row {before.rows} (another sync?)"
            )

    @staticmethod
    def _ensure_partitions(conn, keyed: pl.DataFrame) -> None:
        t0, t1 = keyed["t"].min(), keyed["t"].max()
        conn.execute(
            f"SELECT {SCHEMA}.ensure_partitions(to_timestamp(%s), to_timestamp(%s))",
            (float(t0), float(t1)),
        )

    @staticmethod
    def _set_position(conn, table: str, run_id: str, after: Position) -> None:
        conn.execute(
            f"UPDATE {SCHEMA}.sync_position SET next_seq = %s, rows = %s "
            "WHERE run_id = %s AND tbl = %s",
            (after.next_seq, after.rows, run_id, table),
        )

    @staticmethod
    def _set_rows(conn, table: str, run_id: str, rows: int) -> None:
        conn.execute(
            f"UPDATE {SCHEMA}.runs SET {table}_rows = %s, synced_at = now() WHERE run_id = %s",
            (rows, run_id),
        )

    def _update_channels(self, run_id: str, df: pl.DataFrame) -> None:
        """The newest sample of each channel in ``df`` becomes the channel's live status."""
        run_rows = df.group_by("channel", maintain_order=True).agg(
            pl.all().last(), pl.len().alias("n")
        )
        keys = ("voltage_volt", "current_ampere", "temperature_celsius")
        for r in run_rows.iter_rows(named=True):
            self.conn.execute(
                f"INSERT INTO {SCHEMA}.channels AS c (run_id, channel, t, test_time_second, "
                "voltage_volt, current_ampere, temperature_celsius, cycle_count, step_index, "
                "samples) VALUES (%s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (run_id, channel) DO UPDATE SET t = excluded.t, "
                "test_time_second = excluded.test_time_second, "
                "voltage_volt = excluded.voltage_volt, current_ampere = excluded.current_ampere, "
                "temperature_celsius = excluded.temperature_celsius, "
                "cycle_count = excluded.cycle_count, step_index = excluded.step_index, "
                "samples = c.samples + excluded.samples",
                (
                    run_id,
                    r["channel"],
                    r["unix_time_second"],
                    r["test_time_second"],
                    *(r.get(k) for k in keys),
                    r["cycle_count"],
                    r["step_index"],
                    r["n"],
                ),
            )

    def _load_adbc(
        self, table: str, run_id: str, keyed: pl.DataFrame, before: Position, after: Position
    ) -> int:
        conn = self._adbc_conn()
        arrow = keyed.with_columns(
            (pl.col("t") * 1e6).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
        ).to_arrow()
        cur = conn.cursor()
        try:
            self._check_and_lock(_AdbcShim(cur), table, run_id, before)
            if table == "samples":
                self._ensure_partitions(_AdbcShim(cur), keyed)
            cur.adbc_ingest(table, arrow, mode="append", db_schema_name=SCHEMA)
            self._set_position(_AdbcShim(cur), table, run_id, after)
            self._set_rows(_AdbcShim(cur), table, run_id, after.rows)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
        if table == "samples":
            with self.conn.transaction():
                self._update_channels(run_id, keyed)
        return keyed.height

    def _adbc_conn(self):
        if self._adbc is None:
            try:
                import adbc_driver_postgresql.dbapi as adbc
            except ImportError:
                raise CatalogError(
                    "loader 'adbc' needs adbc-driver-postgresql (pip install 'cellbench[lab]')"
                ) from None
            try:
                self._adbc = adbc.connect(self.url)
            except Exception as exc:
                raise CatalogError(
                    f"cannot connect to the catalog at {describe(self.url)} through ADBC: "
                    f"{redact(str(exc).splitlines()[0])}"
                ) from None
        return self._adbc

    # ---------------------------------------------------------------------------- archive

    def archived(self, run_id: str) -> dict[str, list[tuple[int, int, int, str, str]]]:
        """Per table: (first_seq, last_seq, rows, uri, sha256) of the archived segments."""
        out: dict[str, list[tuple[int, int, int, str, str]]] = {t: [] for t in schema.TABLES}
        for tbl, first, last, rows, uri, digest in self.conn.execute(
            f"SELECT tbl, first_seq, last_seq, rows, uri, sha256 FROM {SCHEMA}.segments "
            "WHERE run_id = %s ORDER BY tbl, first_seq, last_seq DESC",
            (run_id,),
        ):
            out[tbl].append((int(first), int(last), int(rows), uri, digest))
        return out

    def record_segment(
        self, run_id: str, table: str, first: int, last: int, rows: int, seg
    ) -> None:
        """Mark a segment archived (call only after its checksum was verified there)."""
        self.conn.execute(
            f"INSERT INTO {SCHEMA}.segments (run_id, tbl, first_seq, last_seq, rows, bytes, "
            "sha256, uri) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (run_id, table, first, last, rows, seg.bytes, seg.sha256, seg.uri),
        )

    # ---------------------------------------------------------------------------- reading

    def list_runs(self, where: str | None = None, *, limit: int = 100_000) -> list[dict[str, Any]]:
        """Runs (newest first) as dicts; ``where`` is an SQL condition on ``runs``' columns,
        run in a read-only transaction as one statement."""
        sql = (
            f"SELECT run_id, status, start_time, end_time, cell_name, chemistry, station, pc, "
            f"protocol, samples_rows, spectra_rows, events_rows, archive, synced_at "
            f"FROM {SCHEMA}.runs"
        )
        if where:
            sql += f" WHERE ({where.replace('%', '%%')})"  # one statement: parameters follow
        sql += " ORDER BY start_time DESC NULLS LAST, run_id LIMIT %s"
        import psycopg

        try:
            with self._read_only() as cur:
                cur.execute(sql, (limit,))
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
        except psycopg.Error as exc:
            raise CatalogError(f"--where {where!r}: {str(exc).splitlines()[0]}") from None
        return [dict(zip(names, r, strict=True)) for r in rows]

    @contextmanager
    def _read_only(self) -> Iterator:
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            with self.conn.cursor() as cur:
                yield cur

    def run_meta(self, run_id: str) -> tuple[RunMeta, dict[str, int]]:
        """``run.json`` of a catalog run and its row counts per table."""
        row = self.conn.execute(
            f"SELECT meta, samples_rows, spectra_rows, events_rows FROM {SCHEMA}.runs "
            "WHERE run_id = %s",
            (run_id,),
        ).fetchone()
        if row is None:
            raise CatalogError(f"no run {run_id!r} in the catalog at {describe(self.url)}")
        meta = RunMeta.from_dict(row[0], source=f"catalog run {run_id}")
        return meta, {"samples": int(row[1]), "spectra": int(row[2]), "events": int(row[3])}

    def rows_from(self, table: str, run_id: str, first_row: int) -> pl.DataFrame:
        """Rows of a run's table from row number ``first_row`` on, in order (model columns)."""
        names = [c.name for c in schema.COLUMNS[table]]
        cur = self.conn.cursor(binary=True)
        cur.execute(
            f"SELECT row_no, {', '.join(names)} FROM {SCHEMA}.{table} "
            "WHERE run_id = %s AND row_no >= %s ORDER BY row_no",
            (run_id, first_row),
        )
        rows = cur.fetchall()
        df = pl.DataFrame(rows, schema={"row_no": pl.Int64, **schema.schema(table)}, orient="row")
        return df

    def upsert_cycle_summaries(self, run_id: str, summary: pl.DataFrame) -> int:
        """Store per-cycle summaries of a run (replacing earlier ones of the same cycles)."""
        if summary.height == 0:
            return 0
        if "channel" not in summary.columns:
            summary = summary.with_columns(pl.lit("").alias("channel"))
        keys = (
            "charge_capacity_ampere_hour",
            "discharge_capacity_ampere_hour",
            "coulombic_efficiency",
            "energy_efficiency",
        )
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {SCHEMA}.cycle_summaries (run_id, channel, cycle_count, "
                f"{', '.join(keys)}, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (run_id, channel, cycle_count) DO UPDATE SET "
                + ", ".join(f"{k} = excluded.{k}" for k in (*keys, "summary"))
                + ", updated_at = now()",
                [
                    (
                        run_id,
                        str(r["channel"]),
                        int(r["cycle_count"]),
                        *(_finite(r.get(k)) for k in keys),
                        json.dumps({k: _finite(v) for k, v in r.items()}, default=str),
                    )
                    for r in summary.iter_rows(named=True)
                ],
            )
        return summary.height

    def upsert_eis_fits(self, run_id: str, circuit: str, fits: pl.DataFrame) -> int:
        """Store one row per sweep of ``fits`` (from ``analysis.eis_batch.fit_spectra``)."""
        if fits.height == 0:
            return 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {SCHEMA}.eis_fits (run_id, channel, sweep_index, circuit, "
                "parameters) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id, channel, "
                "sweep_index, circuit) DO UPDATE SET parameters = excluded.parameters, "
                "updated_at = now()",
                [
                    (
                        run_id,
                        str(r.get("channel") or ""),
                        int(r["sweep_index"]),
                        circuit,
                        json.dumps({k: _finite(v) for k, v in r.items()}, default=str),
                    )
                    for r in fits.iter_rows(named=True)
                ],
            )
        return fits.height


def _finite(v: Any) -> Any:
    """NaN and infinities as None (JSON and SQL NULL)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _AdbcShim:
    """psycopg-style ``execute(sql, params)`` over an ADBC cursor (params inlined as literals:
    only numbers and run ids that this module made, never user text)."""

    def __init__(self, cur):
        self.cur = cur

    def execute(self, sql: str, params: tuple = ()):
        from psycopg.sql import Literal

        parts = sql.split("%s")
        if len(parts) != len(params) + 1:
            raise CatalogError("internal: parameter count mismatch")
        text = parts[0]
        for p, rest in zip(params, parts[1:], strict=True):
            text += Literal(p).as_string(None) + rest
        self.cur.execute(text)
        return self

    def fetchone(self):
        return self.cur.fetchone()
