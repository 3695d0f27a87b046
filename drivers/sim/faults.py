"""Fault injection shared by every simulated instrument.

A test (or ``cellbench sim serve``) arms a fault; the simulator consumes it when the next matching
command arrives. Kinds:

``no_reply``     the command is processed but its reply is never sent.
``late_reply``   the reply is sent after ``delay_s`` wall seconds.
``garbled``      the reply's bytes are mangled (not valid ASCII, unparseable).
``disconnect``   the connection is dropped and new connections are refused for ``delay_s``
                 (serial simulators: the port stays silent for ``delay_s``, like an unplugged
                 adapter).
``over_range``   the next measurement reports the instrument's over-range value.
``measurement_fault``  the next reading reports the instrument's measurement-fault value
                 (BT356x: contact check failed, +1E+10 class).
``interlock``    the safety interlock opens (the simulator turns its output off).
``error_queue``  an error is pushed on the instrument's error queue (``code``, ``message``).

``count`` is how many matching commands the fault applies to (``None``: until cleared).
``on`` restricts it to commands whose text contains that string (case-insensitive).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULT_KINDS = (
    "no_reply",
    "late_reply",
    "garbled",
    "disconnect",
    "over_range",
    "measurement_fault",
    "interlock",
    "error_queue",
)


@dataclass
class Fault:
    """One armed fault; ``remaining`` counts down as commands consume it (None: persistent)."""

    kind: str
    remaining: int | None = 1
    delay_s: float = 0.0
    on: str | None = None
    code: int = -200
    message: str = "Execution error"

    def matches(self, command: str) -> bool:
        return self.on is None or self.on.lower() in command.lower()


class FaultInjector:
    """Thread-safe set of armed faults, consumed by a simulator as commands arrive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.history: list[tuple[str, str]] = []  # (kind, command) of every fault applied

    def inject(
        self,
        kind: str,
        count: int | None = 1,
        delay_s: float = 0.0,
        *,
        on: str | None = None,
        code: int = -200,
        message: str = "Execution error",
    ) -> Fault:
        """Arm a fault (see the module docstring for kinds). Returns it (to inspect or clear)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None, got {count!r}")
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s!r}")
        fault = Fault(kind, count, float(delay_s), on, int(code), message)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, kind: str, command: str = "") -> Fault | None:
        """Consume one application of the first armed ``kind`` fault matching ``command``."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.matches(command):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    self.history.append((kind, command))
                    return fault
        return None

    def armed(self, kind: str | None = None) -> list[Fault]:
        """Faults still armed (of ``kind`` if given)."""
        with self._lock:
            return [f for f in self._faults if kind is None or f.kind == kind]

    def clear(self, kind: str | None = None) -> None:
        """Disarm every fault (of ``kind`` if given)."""
        with self._lock:
            self._faults = [f for f in self._faults if kind is not None and f.kind != kind]


def garble(reply: bytes) -> bytes:
    """Deterministically mangle a reply: high-bit bytes (invalid ASCII) and reversed content."""
    body = reply.rstrip(b"\r\n")
    mangled = bytes((b ^ 0x80) for b in body[::-1]) or b"\xff"
    return b"\x8f" + mangled + reply[len(body) :]
