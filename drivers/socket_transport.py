"""Raw LAN sockets (``TCPIP::host::port::SOCKET``) through the standard library.

See :class:`SocketTransport`; :func:`cellbench.drivers.transport.open_transport` picks it for
raw-socket resources unless a VISA library is named.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time

from cellbench.drivers.errors import InstrumentConnectionError, InstrumentError, InstrumentTimeout
from cellbench.drivers.transport import BufferedTransport, _socket_endpoint


class SocketTransport(BufferedTransport):
    """A LAN instrument's raw SCPI socket (``TCPIP::host::port::SOCKET``, port 5025 and the
    like) through the standard library: what pyvisa-py does for these resources, without VISA.

    Owning the socket lets the transport do, with public APIs only, what a raw-socket session
    needs: ``TCP_NODELAY`` (else a few writes and a query wait ~40 ms each on Nagle's algorithm
    meeting the instrument's delayed ACK), a refused connection reported at open, and a
    connection the instrument closed reported as lost (so the driver reconnects) rather than as
    a silent timeout. :func:`open_transport` uses it for ``::SOCKET`` resources unless a VISA
    library is named (``library=`` or ``$CELLBENCH_VISA_LIBRARY``).
    """

    def __init__(self, address: str, **kwargs: object):
        super().__init__(address, **kwargs)  # type: ignore[arg-type]
        endpoint = _socket_endpoint(address)
        if endpoint is None:
            raise InstrumentConnectionError(
                "not a raw socket resource (expected TCPIP::host::port::SOCKET)", address=address
            )
        self.host, self.port = endpoint
        self._socket: socket.socket | None = None
        self._buffer = bytearray()

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise self._error(
                InstrumentConnectionError,
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}",
                "",
            ) from None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        self._buffer.clear()

    def _disconnect(self) -> None:
        sock, self._socket = self._socket, None
        self._buffer.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _lost(self, reason: object) -> InstrumentError:
        return self._error(
            InstrumentConnectionError, f"connection lost: {reason}", self._last_command
        )

    def _peer_closed(self) -> bool:
        """True if the instrument closed or reset the connection (a non-blocking peek)."""
        sock = self._socket
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _send(self, data: bytes) -> None:
        if self._peer_closed() and not self._buffer:
            raise self._error(
                InstrumentConnectionError, "connection closed by the instrument", self._last_command
            )
        try:
            self._socket.settimeout(self.timeout_s)  # type: ignore[union-attr]
            self._socket.sendall(data)  # type: ignore[union-attr]
        except TimeoutError:
            raise self._error(
                InstrumentTimeout, f"write did not complete within {self.timeout_s:g} s",
                self._last_command,
            ) from None  # fmt: skip
        except OSError as exc:
            raise self._lost(exc) from None

    def _fill(self, deadline: float) -> bool:
        """Receive what arrives before ``deadline``; False once it passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock = self._socket
        try:
            readable, _, _ = select.select([sock], [], [], remaining)
            if not readable:
                return False
            chunk = sock.recv(65536)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            raise self._lost(exc) from None
        if not chunk:
            raise self._error(
                InstrumentConnectionError, "connection closed by the instrument", self._last_command
            )
        self._buffer.extend(chunk)
        return True
