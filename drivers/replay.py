"""A transport that replays a scripted conversation: byte-level driver tests without a wire.

:class:`ReplayTransport` is given the exchange an instrument would have, as ``(sent, reply)``
pairs of bytes, each *exactly* as it travels on the wire (terminators included)::

    pairs = [
        (b"*IDN?\\n", b"KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.12b\\n"),
        (b":OUTP ON\\n", None),           # a command the instrument does not answer
        (b"OUTP:INT:TRIP?\\n", b"1\\n"),
    ]

Every write must equal the next pair's ``sent`` bytes, or :class:`ReplayMismatch` is raised at
once (naming the pair, what was expected and what the driver sent); the pair's ``reply`` then
becomes readable. A read with no scripted reply left raises :class:`InstrumentTimeout` (exactly
what a silent instrument does, so drivers that drain the line or wait for an optional
acknowledgement behave as they would on the wire), without waiting. :meth:`ReplayTransport.verify`
(called by :func:`replay`) fails if pairs are left unsent or replies unread. Nothing runs in a
thread and no socket or pty is opened. PyMeasure's ``expected_protocol`` is the model.

:func:`replay` is the usual entry point::

    with replay(Keithley2450, pairs, address="TCPIP::x::5025::SOCKET") as smu:
        assert smu.interlock_engaged
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from cellbench.drivers.errors import InstrumentTimeout
from cellbench.drivers.transport import Transport

Pair = tuple[bytes, bytes | None]


class ReplayMismatch(AssertionError):
    """The driver's conversation differs from the scripted one (a test failure)."""


class ReplayTransport(Transport):
    """A :class:`Transport` whose instrument is a list of ``(sent, reply)`` byte pairs.

    Args:
        pairs: the conversation, in order; ``reply`` None (or ``b""``) for an unanswered write.
            A reply may hold several lines (e.g. MethodSCRIPT's two-line version reply).
        read_termination / write_termination: as the driver uses them (the driver's own
            values are applied by :func:`replay`).
    """

    def __init__(self, pairs: Iterable[Pair], address: str = "replay://", **kwargs: Any):
        kwargs.setdefault("timeout_s", 1.0)
        super().__init__(address, **kwargs)
        self.pairs: list[Pair] = [(bytes(s), None if r is None else bytes(r)) for s, r in pairs]
        self.sent: list[bytes] = []
        self._next = 0
        self._buffer = bytearray()

    # -- Transport hooks --------------------------------------------------------------------
    def _connect(self) -> None:
        pass

    def _disconnect(self) -> None:
        pass

    def _send(self, data: bytes) -> None:
        index = self._next
        if index >= len(self.pairs):
            raise ReplayMismatch(
                f"unexpected write #{index + 1} {data!r}: the scripted conversation "
                f"({len(self.pairs)} pairs) is over"
            )
        expected, reply = self.pairs[index]
        if data != expected:
            raise ReplayMismatch(f"write #{index + 1}: expected {expected!r}, driver sent {data!r}")
        self.sent.append(data)
        self._next += 1
        if reply:
            self._buffer.extend(reply)

    def _receive_line(self, timeout_s: float) -> bytes:
        term = self.read_termination.encode()
        index = self._buffer.find(term)
        if index < 0:
            partial = f"; partial reply {bytes(self._buffer)!r}" if self._buffer else ""
            raise self._error(
                InstrumentTimeout, f"no scripted reply left to read{partial}", self._last_command
            )
        line = bytes(self._buffer[:index])
        del self._buffer[: index + len(term)]
        return line

    def _receive_exact(self, size: int, timeout_s: float) -> bytes:
        if len(self._buffer) < size:
            raise self._error(
                InstrumentTimeout,
                f"{len(self._buffer)} of {size} scripted bytes left",
                self._last_command,
            )
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    # -- checks -----------------------------------------------------------------------------
    @property
    def remaining(self) -> list[Pair]:
        """Pairs not yet sent."""
        return self.pairs[self._next :]

    def verify(self) -> None:
        """Raise :class:`ReplayMismatch` if pairs are left unsent or replies unread."""
        problems = []
        if self.remaining:
            listed = ", ".join(repr(s) for s, _ in self.remaining[:3])
            problems.append(f"{len(self.remaining)} scripted write(s) never sent: {listed}")
        if self._buffer:
            problems.append(f"reply bytes never read: {bytes(self._buffer)[:80]!r}")
        if problems:
            raise ReplayMismatch("; ".join(problems))


@contextlib.contextmanager
def replay(
    driver_class: type, pairs: Iterable[Pair], *, address: str = "replay://", **options: Any
) -> Iterator[Any]:
    """Construct ``driver_class`` on a :class:`ReplayTransport` of ``pairs``; yield the driver.

    On a clean exit the whole conversation must have taken place (:meth:`ReplayTransport.verify`);
    the driver is not closed through ``safe_state()`` (that would add writes nobody scripted).
    """
    transport = ReplayTransport(
        pairs,
        address=address,
        read_termination=getattr(driver_class, "read_termination", "\n"),
        write_termination=getattr(driver_class, "write_termination", "\n"),
    ).open()
    driver = driver_class(address, transport=transport, **options)
    yield driver
    transport.verify()
