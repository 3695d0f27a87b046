"""``cellbench instruments``: list serial ports and VISA resources and identify what answers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "instruments",
        help="list serial ports and VISA resources and identify the instruments on them",
        description=(
            "List serial ports (with their /dev/serial/by-id names) and VISA resources "
            "(pyvisa-py unless CELLBENCH_VISA_LIBRARY is set), then send each a short series "
            "of identity queries (*IDN?, Espec ROM?, Mark-10 ?, MethodSCRIPT t), every one "
            "bounded by --timeout. Use --no-identify to only list, and --probe for addresses "
            "that are not enumerated (pseudo-terminals of simulators, LAN instruments); the exit "
            "code is 1 when a --probe address cannot be opened or does not identify."
        ),
    )
    parser.add_argument(
        "--no-identify", action="store_true", help="list only; send nothing to the instruments"
    )
    parser.add_argument(
        "--probe",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="also identify ADDRESS (repeatable), e.g. /tmp/cellbench-sim-x/im3590 "
        "or TCPIP::192.168.0.5::5025::SOCKET",
    )
    parser.add_argument(
        "--only-probe",
        action="store_true",
        help="do not enumerate ports or VISA resources; only the --probe addresses",
    )
    parser.add_argument("--no-visa", action="store_true", help="skip the VISA resource listing")
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.5,
        metavar="S",
        help="bound on each identity query, s (default 0.5)",
    )
    parser.add_argument(
        "--visa-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="bound on the VISA resource listing, s (default 5)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cellbench.drivers.discovery import (
        Port,
        identify,
        list_serial_ports,
        list_visa_resources,
    )

    if not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0, got {args.timeout}")
    ports: list[Port] = []
    notes: list[str] = []
    if not args.only_probe:
        ports.extend(list_serial_ports())
        if not args.no_visa:
            visa, note = list_visa_resources(args.visa_timeout)
            ports.extend(visa)
            if note:
                notes.append(note)
    known = {p.address for p in ports}
    ports.extend(Port(a, "probe") for a in args.probe if a not in known)

    rows = []
    failed_probes: list[str] = []  # addresses the user named that did not identify
    for port in ports:
        names = ", ".join(port.by_id) or port.description
        usb = f"{port.usb_id} {port.serial_number}".strip()
        driver = identity = ""
        if not args.no_identify:
            result = identify(port.address, timeout_s=args.timeout)
            driver = result.driver or (result.protocol if result.ok else "-")
            identity = result.identity if result.ok else f"({result.error})"
            if not result.ok and port.address in args.probe:
                error = result.error
                failed_probes.append(error if port.address in error else f"{port.address}: {error}")
        rows.append((port.address, port.kind, usb, names, driver, identity))
    print_table(rows, identify=not args.no_identify, out=sys.stdout)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not rows:
        print("no serial ports or VISA resources found (use --probe ADDRESS)", file=sys.stderr)
    # An address the user asked about that does not answer is a failure of the command (exit 1);
    # silent enumerated ports are not (most serial ports have nothing behind them).
    for line in failed_probes:
        print(f"cellbench: error: {line}", file=sys.stderr)
    return 1 if failed_probes else 0


def print_table(rows: Sequence[tuple[str, ...]], *, identify: bool, out) -> None:
    """Plain aligned columns (readable in a terminal and in logs)."""
    header = ("ADDRESS", "KIND", "USB", "NAME", "DRIVER", "IDENTITY")
    if not identify:
        header, rows = header[:4], [r[:4] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
