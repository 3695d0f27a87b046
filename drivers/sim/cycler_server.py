"""Loopback TCP servers for the simulated cyclers: framed messages, fault injection.

A :class:`FramedServer` listens on 127.0.0.1, cuts what each connection sends into messages
with a framing function, and answers each with ``handler(message) -> bytes | None``. Faults
from :class:`~cellbench.drivers.sim.faults.FaultInjector` apply per message (``on`` matches the
message text): ``no_reply``, ``late_reply``, ``garbled``, ``disconnect`` (every connection
dropped, new ones refused for ``delay_s``), ``error_queue`` (ignored: cyclers have none).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from cellbench.drivers.sim.faults import FaultInjector, garble

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
    start = buffer.find(b"{")
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(buffer)):
        ch = buffer[index]
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:
                escaped = True
            elif ch == 0x22:
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch == 0x7B:
            depth += 1
        elif ch == 0x7D:
            depth -= 1
            if depth == 0:
                return buffer[start : index + 1], index + 1
    return None


def fixed_framer(size: int) -> Framer:
    """Messages of exactly ``size`` bytes."""

    def frame(buffer: bytes) -> tuple[bytes, int] | None:
        return (buffer[:size], size) if len(buffer) >= size else None

    return frame


class FramedServer:
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
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self.received = 0
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._refuse_until = 0.0
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None

    def listen(self) -> None:
        """Bind now (so the port is known before :meth:`start`); raises OSError if taken."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        listener.listen(16)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def start(self) -> FramedServer:
        if self._listener is None:
            self.listen()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._drop()
        self._close_listener()
        for thread in [self._accept_thread, *self._threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)

    def disconnect(self, refuse_s: float = 0.0) -> None:
        """Drop every connection and refuse new ones for ``refuse_s`` wall seconds."""
        self._refuse_until = time.monotonic() + refuse_s
        if refuse_s > 0:
            self._close_listener()
        self._drop()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()

    def _drop(self) -> None:
        with self.lock:
            clients = list(self._clients)
            self._clients.clear()
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                if time.monotonic() < self._refuse_until:
                    self._stop.wait(0.02)
                    continue
                try:
                    self.listen()
                except OSError:
                    self._stop.wait(0.05)
                continue
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            if time.monotonic() < self._refuse_until:
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.05)
            with self.lock:
                self._clients.add(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"{self.name}-conn", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while True:
                    framed = self.framer(buffer)
                    if framed is None:
                        break
                    message, used = framed
                    buffer = buffer[used:]
                    if not self._respond(conn, message):
                        return
        finally:
            with self.lock:
                self._clients.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

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
