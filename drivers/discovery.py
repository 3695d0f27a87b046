"""Find instruments: serial ports (with their stable by-id names), VISA resources, identities.

Identification sends each address a short list of harmless identity queries, one protocol after
another, each bounded by ``timeout_s``, and stops at the first reply that protocol recognises:

========  ===========================  ==========================================
protocol  query (terminator)           recognised reply
========  ===========================  ==========================================
scpi      ``*IDN?`` (CR+LF)            ``maker,model,serial,version`` (Keithley,
                                       Keysight, Hioki IM3590/BT3562, ...)
espec     ``ROM?`` (CR+LF)             controller firmware, not ``NA:...``
mark10    ``?`` (CR+LF)                ``<number> <force unit>``
emstat    ``t`` (LF), 230400 baud      ``t<firmware>`` (MethodSCRIPT)
========  ===========================  ==========================================

CR+LF is accepted by every CR- or LF-terminated instrument here. Input left over from an earlier
probe is drained before each query, so a late reply is never taken for the next one's.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass, field

from cellbench.drivers.errors import InstrumentError, InstrumentTimeout
from cellbench.drivers.mark10 import parse_reading
from cellbench.drivers.transport import Transport, open_transport, resource_manager


@dataclass(frozen=True)
class Port:
    """A serial port or a VISA resource found on this computer."""

    address: str
    kind: str  # "serial" or "visa"
    description: str = ""
    by_id: tuple[str, ...] = ()
    usb_id: str = ""  # "0403:6001"
    serial_number: str = ""


@dataclass(frozen=True)
class Identification:
    """What answered at an address: protocol, driver name (if cellbench has one) and reply."""

    address: str
    protocol: str = ""
    driver: str = ""
    identity: str = ""
    error: str = ""
    tried: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return bool(self.protocol)


def by_id_names(device: str, folder: str = "/dev/serial/by-id") -> tuple[str, ...]:
    """The stable symlinks (``/dev/serial/by-id/...``, ``/dev/cellbench/...``) to ``device``."""
    target = os.path.realpath(device)
    names = []
    for pattern in (os.path.join(folder, "*"), "/dev/cellbench/*"):
        for link in sorted(glob.glob(pattern)):
            if os.path.realpath(link) == target:
                names.append(link)
    return tuple(names)


def list_serial_ports() -> list[Port]:
    """Serial ports pyserial sees (USB adapters, built-in UARTs), with their by-id names."""
    from serial.tools import list_ports

    ports = []
    for info in sorted(list_ports.comports(), key=lambda p: p.device):
        usb_id = f"{info.vid:04x}:{info.pid:04x}" if info.vid is not None else ""
        description = info.description if info.description not in (None, "n/a") else ""
        ports.append(
            Port(
                info.device,
                "serial",
                description,
                by_id_names(info.device),
                usb_id,
                info.serial_number or "",
            )
        )
    return ports


def list_visa_resources(
    timeout_s: float = 5.0, *, library: str | None = None
) -> tuple[list[Port], str]:
    """VISA resources (TCPIP, USB-TMC, GPIB) within ``timeout_s``; (ports, note).

    Listing runs in a worker thread so a slow backend (network discovery) cannot hang the
    caller; the note says why the list may be incomplete. ``ASRL`` resources are left out:
    :func:`list_serial_ports` lists those ports with more detail.
    """
    found: list[str] = []
    problem: list[str] = []

    def work() -> None:
        try:
            rm = resource_manager(library)
            with warnings.catch_warnings():  # pyvisa-py's hints about optional discovery packages
                warnings.simplefilter("ignore", UserWarning)
                found.extend(rm.list_resources("?*::INSTR"))
        except Exception as exc:
            problem.append(f"VISA listing failed: {exc}")

    worker = threading.Thread(target=work, name="visa-list", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return [], f"VISA listing did not finish within {timeout_s:g} s"
    ports = [Port(r, "visa") for r in sorted(found) if not r.upper().startswith("ASRL")]
    return ports, problem[0] if problem else ""


# --- identification ----------------------------------------------------------------------------
_IDN = re.compile(r"^[^,]+,[^,]+,[^,]*,[^,]*$")
_DRIVER_BY_MODEL = (
    (re.compile(r"KEITHLEY.*,\s*MODEL 2450|,2450,", re.I), "keithley2450"),
    (re.compile(r"E4990A", re.I), "e4990a"),
    (re.compile(r"HIOKI,IM359\d", re.I), "im3590"),
    (re.compile(r"HIOKI,BT356[23]", re.I), "bt3562"),
)


@dataclass(frozen=True)
class _Probe:
    protocol: str
    query: str
    write_termination: str
    baud_rate: int

    def recognise(self, reply: str) -> tuple[bool, str]:
        """(recognised, driver)."""
        text = reply.strip()
        if self.protocol == "scpi":
            if not _IDN.match(text):
                return False, ""
            driver = next((d for pattern, d in _DRIVER_BY_MODEL if pattern.search(text)), "")
            return True, driver
        if self.protocol == "espec":
            # not a refusal ("NA:..."), a Mark-10 error ("*10") or a MethodSCRIPT one ("R!0001")
            refused = text.startswith(("NA", "*")) or text[1:2] == "!"
            return bool(text) and not refused, "espec"
        if self.protocol == "mark10":
            try:
                parse_reading(text)
            except ValueError:
                return False, ""
            return True, "mark10"
        if self.protocol == "emstat":
            return text.startswith("t") and len(text) > 1, "emstat"
        return False, ""


PROBES = (
    _Probe("scpi", "*IDN?", "\r\n", 9600),
    _Probe("espec", "ROM?", "\r\n", 9600),
    _Probe("mark10", "?", "\r\n", 9600),
    _Probe("emstat", "t", "\n", 230400),
)


def _drain(transport: Transport, quiet_s: float = 0.05) -> None:
    saved = transport.timeout_s
    transport.timeout_s = quiet_s
    try:
        for _ in range(100):
            transport.read_raw()
    except InstrumentError:
        pass
    finally:
        transport.timeout_s = saved


def identify(
    address: str, *, timeout_s: float = 0.5, protocols: tuple[str, ...] | None = None
) -> Identification:
    """Try the identity queries at ``address`` (each bounded by ``timeout_s``).

    VISA addresses other than ``ASRL`` get ``*IDN?`` only. Never raises for an instrument
    fault: the result carries the error text instead.
    """
    is_serial = address.startswith("/") or address.upper().startswith(("ASRL", "COM"))
    probes = [
        p
        for p in PROBES
        if (protocols is None or p.protocol in protocols) and (is_serial or p.protocol == "scpi")
    ]
    tried: list[str] = []
    last_error = ""
    for probe in probes:
        tried.append(probe.protocol)
        try:
            transport = open_transport(
                address,
                timeout_s=timeout_s,
                read_termination="\n",
                write_termination=probe.write_termination,
                baud_rate=probe.baud_rate,
            )
        except InstrumentError as exc:
            return Identification(address, error=str(exc), tried=tuple(tried))
        try:
            _drain(transport)
            reply = transport.query(probe.query).strip()
            recognised, driver = probe.recognise(reply)
            if recognised:
                if probe.protocol == "emstat":  # second line of the version reply
                    _drain(transport)
                return Identification(address, probe.protocol, driver, reply, tried=tuple(tried))
            last_error = f"unrecognised reply {reply[:40]!r} to {probe.query!r}"
        except InstrumentTimeout:
            last_error = "no reply"
        except InstrumentError as exc:
            last_error = str(exc)
        finally:
            transport.close()
            time.sleep(0.01)
    return Identification(address, error=last_error or "nothing to try", tried=tuple(tried))
