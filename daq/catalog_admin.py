"""Administration of the catalog: create or upgrade it, give people and PCs their roles, prune.

Run as a role that may create schemas and roles (the database owner with CREATEROLE, or a
superuser). Passwords for new login roles are hashed on the client (SCRAM-SHA-256, libpq's
``PQencryptPasswordConn``) so the clear text never reaches the server's statement log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from cellbench.daq.catalog import CatalogError, connect, describe
from cellbench.daq.catalog_schema import ROLES, SCHEMA, current_version, latest_version, migrate

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_$-]{0,62}$")


def init_catalog(url: str) -> list[int]:
    """Create the catalog schema and roles, or bring them to the newest version.

    Returns the migration versions applied (none: already current).
    """
    import psycopg

    conn = connect(url)
    try:
        if current_version(conn) > latest_version():
            raise CatalogError(
                f"{describe(url)}: catalog schema is newer than this cellbench; upgrade cellbench"
            )
        try:
            return migrate(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CatalogError(
                f"{describe(url)}: not allowed to set up the catalog ({exc.diag.message_primary}); "
                "connect as the database owner with CREATEROLE, or a superuser"
            ) from None
    finally:
        conn.close()


@contextmanager
def _admin(url: str) -> Iterator:
    """A connection whose database errors become one CatalogError naming the catalog."""
    import psycopg

    conn = connect(url)
    try:
        yield conn
    except psycopg.Error as exc:
        text = getattr(exc.diag, "message_primary", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{describe(url)}: {text}") from None
    finally:
        conn.close()


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise CatalogError(
            f"role name {name!r}: use lower-case letters, digits, '_' or '-' (at most 63)"
        )
    return name


def _role(kind: str) -> str:
    try:
        return ROLES[kind]
    except KeyError:
        raise CatalogError(f"role must be one of {sorted(ROLES)}, got {kind!r}") from None


def create_login(url: str, name: str, kind: str, *, password: str | None = None) -> None:
    """Create the login role ``name`` (if missing) as a member of the ``kind`` group role.

    ``password`` (optional) is hashed here; without it the role authenticates another way
    (certificate, peer, GSSAPI) as ``pg_hba.conf`` says.
    """
    from psycopg import sql

    _check_name(name)
    group = _role(kind)
    with _admin(url) as conn, conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        if password:
            hashed = conn.pgconn.encrypt_password(
                password.encode(), name.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(hashed)
                )
            )
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))


def grant(url: str, name: str, kind: str) -> None:
    """Make an existing role a member of the ``kind`` group (admin, writer, reader)."""
    from psycopg import sql

    _check_name(name)
    group = _role(kind)
    with _admin(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            raise CatalogError(f"{describe(url)}: no role {name!r} (create it with --create)")
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))


def revoke(url: str, name: str, kind: str) -> None:
    """Take the ``kind`` group away from ``name``."""
    from psycopg import sql

    _check_name(name)
    with _admin(url) as conn:
        conn.execute(
            sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(_role(kind)), sql.Identifier(name))
        )


def set_live_window(url: str, days: float) -> None:
    """How many days of samples the catalog's live window keeps."""
    if not days > 0:
        raise CatalogError(f"live window must be a positive number of days, got {days}")
    with _admin(url) as conn:
        conn.execute(
            f"UPDATE {SCHEMA}.settings SET value = %s WHERE key = 'live_window_days'", (str(days),)
        )


def prune(url: str) -> int:
    """Drop the day partitions of samples older than the live window; returns how many."""
    with _admin(url) as conn:
        days = conn.execute(
            f"SELECT value::float8 FROM {SCHEMA}.settings WHERE key = 'live_window_days'"
        ).fetchone()[0]
        return int(
            conn.execute(
                f"SELECT {SCHEMA}.drop_partitions_before(now() - make_interval(secs => %s))",
                (float(days) * 86400,),
            ).fetchone()[0]
        )
