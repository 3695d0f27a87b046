"""Loopback TCP servers for the simulated cyclers: framed messages, fault injection.

A :class:`FramedServer` listens on 127.0.0.1, cuts what each connection sends into messages
with a framing function, and answers each with ``handler(message) -> bytes | None``. Faults
from :class:`~cellbench.drivers.sim.faults.FaultInjector` apply per message (``on`` matches the
message text): ``no_reply``, ``late_reply``, ``garbled``, ``disconnect`` (every connection
dropped, new ones refused for ``delay_s``), ``error_queue`` (ignored: cyclers have none).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from cellbench.drivers.sim.faults import FaultInjector, garble
from cellbench.drivers.sim.loopback import LoopbackServer
from cellbench.drivers.transport import json_object_end

#: ``framer(buffer) -> (message, consumed) | None``: the first complete message, or None
Framer = Callable[[bytes], "tuple[bytes, int] | None"]
Handler = Callable[[bytes], "bytes | None"]


def terminator_framer(terminator: bytes) -> Framer:
    """Messages end with ``terminator`` (not included in the message)."""

    def frame(buffer: bytes) -> tuple[bytes, int] | None:
        index = buffer.find(terminator)
        if index < 0:
            return None
        return buffer[:index], index + len(terminator)

    return frame


def json_framer(buffer: bytes) -> tuple[bytes, int] | None:
    """One top-level JSON object (balanced braces outside strings); leading bytes skipped."""
    end = json_object_end(buffer)
    return None if end is None else (buffer[buffer.find(b"{") : end], end)


def fixed_framer(size: int) -> Framer:
    """Messages of exactly ``size`` bytes."""

    def frame(buffer: bytes) -> tuple[bytes, int] | None:
        return (buffer[:size], size) if len(buffer) >= size else None

    return frame


class FramedServer(LoopbackServer):
    """One listening port; a thread per connection; replies with faults applied."""

    def __init__(
        self,
        framer: Framer,
        handler: Handler,
        *,
        name: str,
        faults: FaultInjector,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.framer = framer
        self.handler = handler
        self.name = name
        self.faults = faults
        self.lock = threading.Lock()
        self.received = 0
        self._init_loopback(host, port)

    def _consume(self, conn: socket.socket, buffer: bytearray) -> bool:
        while (framed := self.framer(bytes(buffer))) is not None:
            message, used = framed
            del buffer[:used]
            if not self._respond(conn, message):
                return False
        return True

    def _respond(self, conn: socket.socket, message: bytes) -> bool:
        text = message.decode("utf-8", errors="replace")
        self.received += 1
        fault = self.faults.take("disconnect", text)
        if fault is not None:
            self.disconnect(fault.delay_s)
            return False
        self.faults.take("error_queue", text)
        reply = self.handler(message)
        if reply is None:
            return True
        if self.faults.take("no_reply", text) is not None:
            return True
        fault = self.faults.take("late_reply", text)
        if fault is not None and self._stop.wait(fault.delay_s):
            return False
        if self.faults.take("garbled", text) is not None:
            reply = garble(reply)
        try:
            conn.sendall(reply)
        except OSError:
            return False
        return True
