"""``cellbench catalog ...``: set up the lab catalog, give roles, prune the live window.

Connect as the catalog's administrator (the database owner with CREATEROLE, or a superuser);
the password comes from ``PGPASSFILE`` or the service file, never from this command line. A new
login's password is read from standard input (``--password-stdin``) or asked for on the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from cellbench.core.errors import CellbenchError
from cellbench.daq.catalog_schema import ROLES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "catalog",
        help="set up the lab catalog (PostgreSQL): schema, roles, live window",
        description="Administer the lab-wide PostgreSQL catalog.",
    )
    csub = parser.add_subparsers(dest="catalog_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = csub.add_parser(
        "init",
        help="create the catalog's schema and roles, or upgrade them (versioned migrations)",
    )
    p.add_argument("url", metavar="URL", help="libpq URL or 'service=NAME' of the admin")
    p.set_defaults(func=cmd_init)

    p = csub.add_parser(
        "grant",
        help="give a login role the writer (lab PC), reader (analyst) or admin role",
        description=(
            "Make NAME a member of cellbench_writer, cellbench_reader or cellbench_admin; "
            "with --create, create the login NAME first (password from --password-stdin or a "
            "prompt; hashed before it is sent)."
        ),
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("name", metavar="NAME", help="login role (a PC or a person)")
    p.add_argument("--role", required=True, choices=sorted(ROLES), help="what NAME may do")
    p.add_argument("--create", action="store_true", help="create the login role if missing")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the new login's password from stdin"
    )
    p.set_defaults(func=cmd_grant)

    p = csub.add_parser("revoke", help="take a role away from a login")
    p.add_argument("url", metavar="URL")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", required=True, choices=sorted(ROLES))
    p.set_defaults(func=cmd_revoke)

    p = csub.add_parser(
        "prune",
        help="drop day partitions of samples older than the live window",
        description="Drop whole day partitions of live samples older than the live window "
        "(the archive keeps every row); optionally set the window first.",
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("--live-days", type=float, metavar="DAYS", help="set the live window first")
    p.set_defaults(func=cmd_prune)


def cmd_init(args: argparse.Namespace) -> int:
    from cellbench.daq.catalog import describe
    from cellbench.daq.catalog_admin import init_catalog
    from cellbench.daq.catalog_schema import latest_version

    applied = init_catalog(args.url)
    where = describe(args.url)
    if applied:
        print(f"{where}: catalog at schema version {latest_version()} (applied {applied})")
    else:
        print(f"{where}: catalog already at schema version {latest_version()}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        text = getpass.getpass("password for the new login: ")
    else:
        raise CellbenchError("no password: pass --password-stdin and pipe it in")
    if not text:
        raise CellbenchError("empty password")
    return text


def cmd_grant(args: argparse.Namespace) -> int:
    from cellbench.daq.catalog_admin import create_login, grant

    if args.create:
        password = _read_password(args.password_stdin) if args.password_stdin else None
        if password is None and sys.stdin.isatty():
            password = _read_password(False)
        create_login(args.url, args.name, args.role, password=password)
    else:
        grant(args.url, args.name, args.role)
    print(f"{args.name}: member of {ROLES[args.role]}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from cellbench.daq.catalog_admin import revoke

    revoke(args.url, args.name, args.role)
    print(f"{args.name}: no longer a member of {ROLES[args.role]}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from cellbench.daq.catalog_admin import prune, set_live_window

    if args.live_days is not None:
        set_live_window(args.url, args.live_days)
    n = prune(args.url)
    print(f"dropped {n} day partition(s) of live samples")
    return 0
