"""The socket side every TCP simulator shares: listen on loopback, a thread per connection, drop.

:class:`LoopbackServer` binds (port 0: a free one), accepts on its own thread, serves each
connection on a thread of its own, and can drop every connection and refuse new ones for a while
(the ``disconnect`` fault: a cycler or instrument that went away and came back). What a
connection's bytes mean is the subclass's: :meth:`LoopbackServer._consume` takes the messages
complete in the connection's buffer and answers them. The SCPI instruments
(:mod:`~cellbench.drivers.sim.scpi_server`) and the cyclers' framed protocols
(:mod:`~cellbench.drivers.sim.cycler_server`) are the two kinds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Self


class LoopbackServer:
    """One listening port, an accept thread and a thread per connection.

    A subclass calls :meth:`_init_loopback` in its ``__init__``, sets ``name`` (thread names)
    and ``lock`` (guards the connection set; its instrument state may share it), and implements
    :meth:`_consume`.
    """

    #: pending connections the listener queues
    backlog = 16
    #: bytes read from a connection at a time
    recv_size = 65536

    name: str
    lock: threading.Lock | threading.RLock

    def _init_loopback(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._refuse_until = 0.0
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None

    def _consume(self, conn: socket.socket, buffer: bytearray) -> bool:
        """Answer the complete messages at the start of ``buffer`` (deleting them from it);
        False once the connection is to end."""
        raise NotImplementedError

    # -- life cycle -------------------------------------------------------------------------
    def listen(self) -> None:
        """Bind now (so the port is known before :meth:`start`); raises OSError if taken."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        listener.listen(self.backlog)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def start(self) -> Self:
        if self._listener is None:
            self.listen()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection; join the threads (bounded)."""
        self._stop.set()
        self._drop_connections()
        self._close_listener()
        for thread in [self._accept_thread, *self._threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)

    def disconnect(self, refuse_s: float = 0.0) -> None:
        """Drop every connection and refuse new ones for ``refuse_s`` wall seconds."""
        self._refuse_until = time.monotonic() + refuse_s
        if refuse_s > 0:
            self._close_listener()
        self._drop_connections()

    # -- sockets ----------------------------------------------------------------------------
    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown first: a close() alone leaves the socket listening until the accept
            # thread's pending accept() returns, so a client could connect (and be dropped)
            # inside the refusal window instead of being refused
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()

    def _drop_connections(self) -> None:
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
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(self.recv_size)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer.extend(chunk)
                if not self._consume(conn, buffer):
                    return
        finally:
            with self.lock:
                self._clients.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
