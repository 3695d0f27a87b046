"""The GUI's client of a logger's control channel (:mod:`cellbench.daq.control`); Qt-free.

:class:`RunControl` sends stop / pause / continue to the logger of one run folder and keeps the
logger's latest ``status`` reply, polled on a daemon thread (``interval_s``) so that the GUI
thread only ever reads attributes. A run whose logger does not answer is told apart from one
that ended: :attr:`RunControl.error` says which (from :func:`~cellbench.daq.control.diagnose`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cellbench.daq.control import ControlError, NotListening, diagnose, request

CLIENT = "cellbench gui"


class RunControl:
    """Control and status of the logger writing ``run_path``."""

    def __init__(self, run_path: Path | str, *, interval_s: float = 0.5, timeout_s: float = 3.0):
        self.run_path = Path(run_path)
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self.status: dict[str, Any] = {}  # the newest reply to "status" ({} before the first)
        self.listening = False  # the logger answered the last poll
        self.error: str | None = None  # why it did not (None while it answers)
        self.polls = 0  # status requests made so far
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"cellbench-control-{self.run_path.name}", daemon=True
        )

    # --------------------------------------------------------------------------- polling

    def start(self) -> RunControl:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop polling (the run is not touched)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout_s + 1.0)

    def poll_now(self) -> None:
        """Ask for a fresh status soon (after a command)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def refresh(self) -> dict[str, Any]:
        """One status request now (any thread); updates :attr:`status`/:attr:`error`."""
        self.polls += 1
        try:
            reply = request(self.run_path, "status", timeout_s=self.timeout_s, client=CLIENT)
        except NotListening:
            self.listening = False
            self.error = diagnose(self.run_path)
            return {}
        except ControlError as exc:
            self.listening = False
            self.error = str(exc)
            return {}
        self.status = reply
        self.listening = True
        self.error = None
        return reply

    # ------------------------------------------------------------------------------ views

    @property
    def state(self) -> str:
        """The logger's state (``running``, ``pausing``, ``paused``, ``stopping`` ...); ``""``
        when it does not answer."""
        return str(self.status.get("state") or "") if self.listening else ""

    def channel(self, name: str) -> dict[str, Any]:
        """The newest status of channel ``name`` ({} if unknown)."""
        channels = self.status.get("channels") or {}
        return dict(channels.get(name) or {}) if self.listening else {}

    # --------------------------------------------------------------------------- commands

    def send(self, cmd: str, **params: Any) -> dict[str, Any]:
        """``stop``, ``pause`` or ``continue`` now; raises ControlError (with the reason) if the
        logger does not take it."""
        try:
            reply = request(self.run_path, cmd, timeout_s=self.timeout_s, client=CLIENT, **params)
        except NotListening:
            raise ControlError(diagnose(self.run_path)) from None
        self.poll_now()
        return reply

    def stop(self, reason: str = "stopped from the GUI") -> dict[str, Any]:
        return self.send("stop", reason=reason)

    def pause(self, channels: list[str] | None = None) -> dict[str, Any]:
        return self.send("pause", channels=channels, reason="paused from the GUI")

    def resume(self, channels: list[str] | None = None) -> dict[str, Any]:
        """``continue`` (a Python keyword, hence the name)."""
        return self.send("continue", channels=channels, reason="continued from the GUI")
