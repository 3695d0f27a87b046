"""The lab-wide catalog's schema: versioned migrations and the three roles.

Everything lives in the PostgreSQL schema ``cellbench`` of one database (PostgreSQL >= 15).
Migrations are numbered and applied in order, each in its own transaction under an advisory lock,
and recorded in ``cellbench.schema_migrations``; a migration once released is never edited, a
change is a new migration. Roles (cluster-wide group roles, NOLOGIN; people and PCs log in as
their own roles that are members of one):

=====================  =====================================================================
``cellbench_admin``    owns the schema and everything in it: its members migrate and prune
``cellbench_writer``   a lab PC: insert its runs' rows, update run status and live channels;
                       no DELETE, no TRUNCATE, no DDL (partitions come from a SECURITY DEFINER
                       function)
``cellbench_reader``   an analyst or a dashboard: SELECT only
=====================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "cellbench"
ROLES = {
    "admin": "cellbench_admin",
    "writer": "cellbench_writer",
    "reader": "cellbench_reader",
}
#: The bulk paths rows take into the catalog: PostgreSQL COPY (psycopg) or ADBC.
LOADERS: tuple[str, ...] = ("copy", "adbc")
_LOCK_KEY = 0x63656C6C  # advisory lock held while migrating ("cell")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_ROLES_SQL = "\n".join(
    f"""DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
    CREATE ROLE {role} NOLOGIN;
  END IF;
END $$;"""
    for role in ROLES.values()
)

_V1 = (
    _ROLES_SQL
    + """
-- Everything belongs to the admin group role, so any of its members can migrate and prune.
GRANT cellbench_admin TO CURRENT_USER;
ALTER SCHEMA cellbench OWNER TO cellbench_admin;
ALTER TABLE cellbench.schema_migrations OWNER TO cellbench_admin;
SET LOCAL ROLE cellbench_admin;

CREATE TABLE cellbench.settings (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO cellbench.settings VALUES ('live_window_days', '7');

CREATE TABLE cellbench.runs (
    run_id text PRIMARY KEY,
    status text NOT NULL,
    start_time timestamptz,
    end_time timestamptz,
    cell_name text NOT NULL DEFAULT '',
    chemistry text NOT NULL DEFAULT '',
    station text NOT NULL DEFAULT '',
    pc text NOT NULL DEFAULT '',
    protocol text NOT NULL DEFAULT '',
    software_version text NOT NULL DEFAULT '',
    meta jsonb NOT NULL,
    samples_rows bigint NOT NULL DEFAULT 0,
    spectra_rows bigint NOT NULL DEFAULT 0,
    events_rows bigint NOT NULL DEFAULT 0,
    archive text NOT NULL DEFAULT '',
    synced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_start_time ON cellbench.runs (start_time);
CREATE INDEX runs_cell ON cellbench.runs (cell_name);
CREATE INDEX runs_station ON cellbench.runs (station, pc);

-- How far each table of each run has been loaded: batches < next_seq, holding ``rows`` rows.
-- Rows of a table are numbered in append order (row_no from 0) in every data table below.
CREATE TABLE cellbench.sync_position (
    run_id text NOT NULL REFERENCES cellbench.runs,
    tbl text NOT NULL CHECK (tbl IN ('samples', 'spectra', 'events')),
    next_seq bigint NOT NULL,
    rows bigint NOT NULL,
    PRIMARY KEY (run_id, tbl)
);

-- Sealed Parquet segments in the archive, recorded only after their checksum was verified there.
CREATE TABLE cellbench.segments (
    run_id text NOT NULL REFERENCES cellbench.runs,
    tbl text NOT NULL CHECK (tbl IN ('samples', 'spectra', 'events')),
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    rows bigint NOT NULL,
    bytes bigint NOT NULL,
    sha256 text NOT NULL,
    uri text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, tbl, first_seq, last_seq)
);

-- The newest reading of every channel: what a dashboard shows for live status.
CREATE TABLE cellbench.channels (
    run_id text NOT NULL REFERENCES cellbench.runs,
    channel text NOT NULL,
    t timestamptz NOT NULL,
    test_time_second float8,
    voltage_volt float8,
    current_ampere float8,
    temperature_celsius float8,
    cycle_count int4,
    step_index int4,
    samples bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, channel)
);

CREATE TABLE cellbench.events (
    run_id text NOT NULL REFERENCES cellbench.runs,
    row_no bigint NOT NULL,
    t timestamptz NOT NULL,
    channel text NOT NULL,
    test_time_second float8 NOT NULL,
    unix_time_second float8 NOT NULL,
    kind text NOT NULL,
    severity text NOT NULL,
    message text NOT NULL,
    step_index int4,
    cycle_count int4,
    duration_second float8,
    data text,
    PRIMARY KEY (run_id, row_no)
);
CREATE INDEX events_t ON cellbench.events (t);

CREATE TABLE cellbench.spectra (
    run_id text NOT NULL REFERENCES cellbench.runs,
    row_no bigint NOT NULL,
    t timestamptz NOT NULL,
    channel text NOT NULL,
    sweep_index int4 NOT NULL,
    test_time_second float8 NOT NULL,
    unix_time_second float8 NOT NULL,
    frequency_hertz float8 NOT NULL,
    z_real_ohm float8 NOT NULL,
    z_imag_ohm float8 NOT NULL,
    cycle_count int4,
    step_index int4,
    temperature_celsius float8,
    dc_voltage_volt float8,
    dc_current_ampere float8,
    PRIMARY KEY (run_id, row_no)
);

-- The rolling live window of samples, one partition per UTC day: old days are dropped whole.
CREATE TABLE cellbench.samples (
    run_id text NOT NULL,
    row_no bigint NOT NULL,
    t timestamptz NOT NULL,
    channel text NOT NULL,
    test_time_second float8 NOT NULL,
    unix_time_second float8 NOT NULL,
    voltage_volt float8 NOT NULL,
    current_ampere float8 NOT NULL,
    cycle_count int4 NOT NULL,
    step_count int4 NOT NULL,
    step_index int4 NOT NULL,
    temperature_celsius float8,
    pressure_megapascal float8,
    charging_capacity_ampere_hour float8,
    discharging_capacity_ampere_hour float8,
    charging_energy_watt_hour float8,
    discharging_energy_watt_hour float8,
    step_capacity_ampere_hour float8,
    internal_resistance_ohm float8,
    PRIMARY KEY (run_id, row_no, t)
) PARTITION BY RANGE (t);

CREATE TABLE cellbench.cycle_summaries (
    run_id text NOT NULL REFERENCES cellbench.runs,
    channel text NOT NULL,
    cycle_count int4 NOT NULL,
    charge_capacity_ampere_hour float8,
    discharge_capacity_ampere_hour float8,
    coulombic_efficiency float8,
    energy_efficiency float8,
    summary jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, channel, cycle_count)
);

CREATE TABLE cellbench.eis_fits (
    run_id text NOT NULL REFERENCES cellbench.runs,
    channel text NOT NULL,
    sweep_index int4 NOT NULL,
    circuit text NOT NULL,
    parameters jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, channel, sweep_index, circuit)
);

CREATE VIEW cellbench.live_channels AS
SELECT r.station, r.pc, r.cell_name, r.status, c.*, now() - c.t AS age
FROM cellbench.channels c JOIN cellbench.runs r USING (run_id);

-- Day partitions of samples on demand; the writer role may call this but create nothing itself.
CREATE FUNCTION cellbench.ensure_partitions(t0 timestamptz, t1 timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = cellbench, pg_temp AS $fn$
DECLARE
    d date := (t0 AT TIME ZONE 'UTC')::date;
    last date := (t1 AT TIME ZONE 'UTC')::date;
    part text;
    made integer := 0;
BEGIN
    IF last - d > 400 THEN
        RAISE EXCEPTION 'sample times span % days (% .. %): check the clocks', last - d, t0, t1;
    END IF;
    WHILE d <= last LOOP
        part := 'samples_' || to_char(d, 'YYYYMMDD');
        IF to_regclass('cellbench.' || part) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('cellbench.' || part));
            IF to_regclass('cellbench.' || part) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE cellbench.%I PARTITION OF cellbench.samples '
                    'FOR VALUES FROM (%L) TO (%L)',
                    part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
                made := made + 1;
            END IF;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END $fn$;

-- Drop whole day partitions older than the live window (admin: ``cellbench catalog prune``).
CREATE FUNCTION cellbench.drop_partitions_before(cutoff timestamptz) RETURNS integer
LANGUAGE plpgsql SET search_path = cellbench, pg_temp AS $fn$
DECLARE
    part record;
    n integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace ns ON ns.oid = p.relnamespace
        WHERE ns.nspname = 'cellbench' AND p.relname = 'samples'
          AND c.relname ~ '^samples_[0-9]{8}$'
          AND (to_date(substr(c.relname, 9), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC'
              <= cutoff
    LOOP
        EXECUTE format('DROP TABLE cellbench.%I', part.relname);
        n := n + 1;
    END LOOP;
    RETURN n;
END $fn$;

REVOKE ALL ON FUNCTION cellbench.ensure_partitions(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION cellbench.drop_partitions_before(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cellbench.ensure_partitions(timestamptz, timestamptz)
    TO cellbench_writer;
GRANT EXECUTE ON FUNCTION cellbench.drop_partitions_before(timestamptz) TO cellbench_admin;

GRANT USAGE ON SCHEMA cellbench TO cellbench_reader, cellbench_writer, cellbench_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA cellbench
    TO cellbench_reader, cellbench_writer, cellbench_admin;
GRANT INSERT ON cellbench.runs, cellbench.sync_position, cellbench.segments, cellbench.channels,
    cellbench.events, cellbench.spectra, cellbench.samples, cellbench.cycle_summaries,
    cellbench.eis_fits TO cellbench_writer;
GRANT UPDATE ON cellbench.runs, cellbench.sync_position, cellbench.channels,
    cellbench.cycle_summaries, cellbench.eis_fits TO cellbench_writer;
GRANT ALL ON ALL TABLES IN SCHEMA cellbench TO cellbench_admin;
"""
)

# Version 2: a run belongs to the login that first synced it; a writer changes and adds rows only
# to its own runs (one check per statement over the inserted rows, so a COPY stays fast).
_OWNED = (
    "samples", "spectra", "events", "segments", "channels", "cycle_summaries", "eis_fits",
    "sync_position",
)  # fmt: skip
_V2 = (
    """
ALTER TABLE cellbench.runs ADD COLUMN owner name NOT NULL DEFAULT session_user;
CREATE INDEX runs_owner ON cellbench.runs (owner);

CREATE FUNCTION cellbench.is_admin() RETURNS boolean
LANGUAGE sql STABLE SET search_path = cellbench, pg_temp AS $fn$
    SELECT pg_has_role(session_user, 'cellbench_admin', 'MEMBER')
$fn$;

-- Runs: only the owner (or an admin) updates a run, and nobody hands it to another owner.
CREATE FUNCTION cellbench.check_run_owner() RETURNS trigger
LANGUAGE plpgsql SET search_path = cellbench, pg_temp AS $fn$
BEGIN
    IF NEW.owner IS DISTINCT FROM OLD.owner THEN
        RAISE EXCEPTION 'run % belongs to %; its owner cannot change', OLD.run_id, OLD.owner
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.owner <> session_user AND NOT cellbench.is_admin() THEN
        RAISE EXCEPTION 'run % belongs to %, not to %', OLD.run_id, OLD.owner, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $fn$;
CREATE TRIGGER runs_owner BEFORE UPDATE ON cellbench.runs
    FOR EACH ROW EXECUTE FUNCTION cellbench.check_run_owner();

-- Rows of a run: once per statement, over the rows it inserted.
CREATE FUNCTION cellbench.check_rows_owner() RETURNS trigger
LANGUAGE plpgsql SET search_path = cellbench, pg_temp AS $fn$
DECLARE
    bad record;
BEGIN
    IF cellbench.is_admin() THEN
        RETURN NULL;
    END IF;
    SELECT n.run_id, r.owner INTO bad
    FROM (SELECT DISTINCT run_id FROM new_rows) n
    LEFT JOIN cellbench.runs r USING (run_id)
    WHERE r.owner IS DISTINCT FROM session_user
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'run % belongs to %, not to %', bad.run_id,
            coalesce(bad.owner::text, 'nobody (not in runs)'), session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END $fn$;
"""
    + "".join(
        f"""CREATE TRIGGER {t}_owner AFTER INSERT ON cellbench.{t}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cellbench.check_rows_owner();
"""
        for t in _OWNED
    )
    + "".join(
        f"""CREATE TRIGGER {t}_owner_update AFTER UPDATE ON cellbench.{t}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cellbench.check_rows_owner();
"""
        for t in ("channels", "cycle_summaries", "eis_fits", "sync_position")
    )
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, tables, live window, roles", _V1),
    Migration(2, "runs belong to the login that synced them", _V2),
)


def migrate(conn, *, target: int | None = None) -> list[int]:
    """Apply the migrations ``conn``'s catalog lacks, in order; returns the versions applied.

    ``conn`` is a psycopg connection of a role that may create schemas and roles (the admin).
    Concurrent callers serialise on an advisory lock; each migration commits on its own.
    """
    applied: list[int] = []
    if current_version(conn) == 0:  # (an admin member may not create schemas: ask first)
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
    for mig in MIGRATIONS:
        if target is not None and mig.version > target:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            done = conn.execute(
                f"SELECT 1 FROM {SCHEMA}.schema_migrations WHERE version = %s", (mig.version,)
            ).fetchone()
            if done:
                continue
            if mig.version > 1:  # objects of later migrations belong to the admin role too
                conn.execute(f"SET LOCAL ROLE {ROLES['admin']}")
            conn.execute(mig.sql)
            conn.execute(
                f"INSERT INTO {SCHEMA}.schema_migrations (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
            applied.append(mig.version)
    return applied


def current_version(conn) -> int:
    """The newest migration applied to the catalog; 0 for a database never initialised."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_migrations",)
    ).fetchone()
    if not row or not row[0]:
        return 0
    got = conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_migrations")
    return int(got.fetchone()[0])


def latest_version() -> int:
    return MIGRATIONS[-1].version
