"""A real PostgreSQL server for the catalog tests: initdb + pg_ctl on loopback, removed afterwards.

Uses Debian's ``postgresql`` package (``/usr/lib/postgresql/<v>/bin``) or whatever ``pg_config
--bindir`` names; tests skip with the reason where neither is installed. As root the server runs
as the ``postgres`` user (PostgreSQL refuses root). Passwords live only in a 0600 password file
given to libpq through ``PGPASSFILE``, as a lab PC would keep them.

Import the fixtures into a test module with ``from pg_server import catalog_url, pg_server``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

ADMIN, WRITER, READER = "cb_admin", "lab_pc1", "analyst1"


def _bindir() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One throw-away PostgreSQL cluster."""

    def __init__(self, bindir: Path, *, durable: bool = False):
        self.durable = durable  # fsync on (benchmarks); tests run without it
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="cellbench-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.dbname = "lab"
        self.passwords = {u: secrets.token_urlsafe(16) for u in (ADMIN, WRITER, READER)}
        self.passfile = self.root / "pgpass"
        self.passfile.write_text(
            "".join(f"{self.host}:{self.port}:*:{u}:{p}\n" for u, p in self.passwords.items())
        )
        self.passfile.chmod(0o600)
        self._as_root = os.geteuid() == 0
        pwfile = self.root / "pw"
        pwfile.write_text(self.passwords[ADMIN] + "\n")
        if self._as_root:
            uid = pwd.getpwnam("postgres").pw_uid
            os.chown(self.root, uid, -1)
            os.chown(pwfile, uid, -1)
        self.root.chmod(0o711)
        self._run(
            "initdb", "-D", str(self.data), "-U", ADMIN, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        pwfile.unlink()
        self.start()
        self._run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", ADMIN, self.dbname)

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"{tool} failed: {out.stderr or out.stdout}")

    def start(self) -> None:
        opts = (
            f"-c listen_addresses={self.host} -c port={self.port} "
            f"-c unix_socket_directories={self.root}"
        )
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                  "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self.stop("immediate")  # as a crash or power cut of the server looks to its clients
        self.start()

    def url(self, user: str) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{self.dbname}"

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    """A running PostgreSQL server with PGPASSFILE pointing at its passwords."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (apt-get install postgresql: initdb, pg_ctl)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
    server = PgServer(bindir)
    old = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(server.passfile)
    try:
        yield server
    finally:
        if old is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = old
        server.destroy()


@pytest.fixture(scope="session")
def catalog_url(pg_server) -> dict[str, str]:
    """An initialised catalog: URLs of the admin, a writer (lab PC) and a reader (analyst)."""
    from cellbench.daq.catalog_admin import create_login, init_catalog

    admin = pg_server.url(ADMIN)
    init_catalog(admin)
    create_login(admin, WRITER, "writer", password=pg_server.passwords[WRITER])
    create_login(admin, READER, "reader", password=pg_server.passwords[READER])
    return {"admin": admin, "writer": pg_server.url(WRITER), "reader": pg_server.url(READER)}
