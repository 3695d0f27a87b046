"""Serial instrument simulators behind a pseudo-terminal pair.

A simulator owns the master side of a pty; its slave side is a real tty that pyserial (or pyvisa-py
as ``ASRL<path>::INSTR``) opens exactly like a USB-serial adapter. One thread reads the master,
frames lines the way the instrument does (CR+LF, LF or CR), hands each line to ``handle()`` and
writes the reply with the instrument's terminator, after applying any injected fault
(``no_reply``, ``late_reply``, ``garbled`` and ``disconnect`` here; ``over_range``,
``interlock`` and ``error_queue`` in each simulator, which
knows what its instrument answers then).

The slave path (``/dev/pts/N``) changes when a pty is re-created, so simulators publish a stable
address instead: a symlink in a private temporary folder, e.g.
``/tmp/cellbench-sim-ab12/im3590 -> /dev/pts/7``. A simulated disconnect closes the pty (the client
sees an I/O error, like an unplugged USB adapter), and the reconnect re-points the same symlink at
a new pty, so a driver's ``reconnect()`` of the same address recovers — as with a
``/dev/serial/by-id`` name after re-plugging.

Every received line and every reply is recorded (``received``, ``sent``, raw bytes with their
terminators) so that protocol tests can pin the exact bytes a driver sends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import tempfile
import threading
import time
import tty
from collections.abc import Iterable
from pathlib import Path

from cellbench.drivers.sim.faults import FaultInjector, garble

# How long a blocked write to a pty whose client stopped reading may wait before the bytes are
# dropped, as a UART would drop them; keeps the simulator thread from hanging on a dead client.
_WRITE_GIVE_UP_S = 1.0
_POLL_S = 0.05


class SerialSimulator:
    """Base of the serial simulators: pty, reader thread, line framing, faults, transcript.

    Subclasses set ``line_end`` (what the instrument terminates its replies with),
    ``command_end`` (the byte that ends a received command; stray CR/LF around it are stripped, so
    ``CR+LF`` and bare ``LF`` both work where the instrument accepts both) and implement
    ``handle(line) -> str | list[str] | None`` (``None``: the instrument sends nothing back).
    """

    line_end: bytes = b"\r\n"
    #: The byte that ends a command from the host (CR or LF; the other one is stripped).
    command_end: bytes = b"\n"
    #: Registry name of the driver that talks to this simulator.
    driver: str = ""

    def __init__(
        self,
        cell,
        *,
        name: str = "",
        faults: FaultInjector | None = None,
        link_dir: str | os.PathLike | None = None,
    ):
        self.cell = cell
        self.name = name or self.driver or type(self).__name__.lower()
        self.faults = faults if faults is not None else FaultInjector()
        self._own_dir = link_dir is None
        self._link_dir = Path(link_dir or tempfile.mkdtemp(prefix="cellbench-sim-"))
        self._link = self._link_dir / self.name
        self.received: list[bytes] = []
        self.sent: list[bytes] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_path = ""
        self._io_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer = b""
        #: Exceptions raised by ``handle()`` (a simulator bug must not silently kill the port).
        self.errors: list[str] = []

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """Stable path to open (a symlink that follows the current pty)."""
        return str(self._link)

    @property
    def port(self) -> str:
        """The current pty slave path, e.g. ``/dev/pts/7``."""
        return self._slave_path

    def start(self) -> SerialSimulator:
        self._open_pty()
        self._thread = threading.Thread(target=self._serve, name=f"sim-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._close_pty()
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()
        if self._own_dir:
            shutil.rmtree(self._link_dir, ignore_errors=True)

    close = stop

    def __enter__(self) -> SerialSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def disconnect(self, duration_s: float = 0.3) -> None:
        """Unplug: close the pty now, plug a new one in behind the same address after a while.

        The symlink disappears meanwhile, as a ``/dev/serial/by-id`` name does, so a client
        cannot reopen the old pty number (which the kernel may hand to another pty)."""
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()
        self._close_pty()
        timer = threading.Timer(duration_s, self._reopen)
        timer.daemon = True
        timer.start()

    def _reopen(self) -> None:
        if not self._stop.is_set():
            self._open_pty()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw: no echo, no CR/LF translation, until the client sets its own attributes.
        tty.setraw(slave)
        os.set_blocking(master, False)
        path = os.ttyname(slave)
        tmp = self._link.with_name(f".{self.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(path, tmp)
        os.replace(tmp, self._link)  # atomic re-point: a client never sees a missing link
        with self._io_lock:
            self._buffer = b""
            # The simulator keeps the slave open too, so the master never reads EIO between
            # clients; the client's own handle still sees EIO once the master is closed.
            self._master, self._slave, self._slave_path = master, slave, path

    def _close_pty(self) -> None:
        with self._io_lock:
            master, slave = self._master, self._slave
            self._master = self._slave = None
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # --- wire ------------------------------------------------------------------------------
    def _serve(self) -> None:
        end = self.command_end
        strip = b"\r\n"
        while not self._stop.is_set():
            fd = self._master
            if fd is None:
                time.sleep(_POLL_S)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], _POLL_S)
                if not ready:
                    continue
                data = os.read(fd, 4096)
            except OSError:  # closed under us by disconnect(); wait for the new pty
                time.sleep(_POLL_S)
                continue
            self._buffer += data
            while end in self._buffer:
                raw, self._buffer = self._buffer.split(end, 1)
                self.received.append(raw + end)
                line = raw.strip(strip).decode("ascii", errors="replace")
                self._dispatch(line)

    def _dispatch(self, line: str) -> None:
        # A disconnect hits whatever command comes next, reply or not.
        unplug = self.faults.take("disconnect", line) if line else None
        if unplug is not None:
            self.disconnect(unplug.delay_s or 0.3)
            return
        try:
            reply = self.handle(line)
        except Exception as exc:
            self.errors.append(f"{line!r}: {exc!r}")
            return
        if reply is None:
            return
        lines = [reply] if isinstance(reply, str) else list(reply)
        if not lines:
            return
        line = self.fault_key(line)
        if self.faults.take("no_reply", line) is not None:
            return
        late = self.faults.take("late_reply", line)
        if late is not None:
            time.sleep(late.delay_s)
        if self.faults.take("garbled", line) is not None:
            for text in lines:
                self.send(garble(text.encode("ascii") + self.line_end), terminate=False)
            return
        for text in lines:
            self.send(text)

    def fault_key(self, line: str) -> str:
        """The command text a reply's faults are matched against (``on=`` of an injected fault);
        the line that triggered the reply unless the protocol says otherwise."""
        return line

    def send(self, text: str | bytes, *, terminate: bool = True) -> None:
        """Write one reply line (with the instrument's terminator) to the client."""
        data = text.encode("ascii") if isinstance(text, str) else text
        if terminate:
            data += self.line_end
        self.sent.append(data)
        deadline = time.monotonic() + _WRITE_GIVE_UP_S
        while data:
            fd = self._master
            if fd is None:
                return  # unplugged: the bytes are lost, as on a real cable
            try:
                n = os.write(fd, data)
                data = data[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    return
                raise

    def handle(self, line: str) -> str | Iterable[str] | None:
        raise NotImplementedError


def format_si(value: float) -> str:
    """Number as instruments print it: ``+1.23456E+03``."""
    return f"{value:+.5E}"
