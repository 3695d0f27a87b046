"""Pausing a run where it is safe, and continuing it: the shared state between the engine (which
takes requests from any thread: the control channel, a test) and its channel runners (which act
on them at their next safe point).

A channel pauses only where nothing is being sourced:

* **between steps** — a step that is running (a CC charge, an EIS sweep, a GITT sequence) runs
  to its end first; the channel then holds with its output off, sampled at the protocol's
  interval with the safety limits checked, until it is continued or the run stops;
* **in a rest** (a ``rest`` or ``ocv`` step) at once — the channel stays at open circuit and the
  rest's clock stops, so after ``continue`` the rest still has the time it had left.

A pause never stops the clock of the run (test time goes on) and is recorded as ``status``
events (``data.action`` = ``pause_requested`` / ``paused`` / ``continue_requested`` /
``continued``), so the record says when and for how long each channel was held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

#: ``data["action"]`` of the pause/continue events in a run's ``events`` table.
PAUSE_ACTIONS = ("pause_requested", "paused", "continue_requested", "continued")


class PauseError(ValueError):
    """A pause or continue request names a channel the run does not have."""


class PauseControl:
    """Which channels are asked to pause and which are holding; thread-safe.

    ``channels`` are every channel of the run. A request for ``None`` means all of them.
    """

    def __init__(self, channels: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.channels: tuple[str, ...] = tuple(channels)
        self._asked: set[str] = set()
        self._holding: set[str] = set()
        self._finished: set[str] = set()

    def set_channels(self, channels: Iterable[str]) -> None:
        with self._lock:
            self.channels = tuple(channels)

    def _pick(self, channels: Iterable[str] | None) -> set[str]:
        if channels is None:
            return set(self.channels)
        chosen = set(channels)
        unknown = sorted(chosen - set(self.channels))
        if unknown:
            have = ", ".join(self.channels)
            raise PauseError(f"no channel {', '.join(unknown)} in this run (channels: {have})")
        return chosen

    def ask_pause(self, channels: Iterable[str] | None = None) -> list[str]:
        """Ask ``channels`` (all when None) to pause; returns those newly asked (sorted)."""
        with self._lock:
            chosen = self._pick(channels) - self._finished
            new = sorted(chosen - self._asked)
            self._asked |= chosen
            self._changed.notify_all()
            return new

    def ask_continue(self, channels: Iterable[str] | None = None) -> list[str]:
        """Withdraw the pause of ``channels`` (all when None); returns those that were asked."""
        with self._lock:
            chosen = self._pick(channels)
            was = sorted(chosen & self._asked)
            self._asked -= chosen
            self._changed.notify_all()
            return was

    def asked_among(self, channels: Iterable[str] | None = None) -> list[str]:
        """Which of ``channels`` (all when None) are asked to pause now (sorted)."""
        with self._lock:
            return sorted(self._pick(channels) & self._asked)

    def asked(self, channel: str) -> bool:
        """Whether ``channel`` should pause (or stay paused) at its next safe point."""
        return channel in self._asked  # a set lookup: atomic under the GIL, no lock per sample

    def holding(self, channel: str, held: bool) -> None:
        """A runner says it is (no longer) holding paused."""
        with self._lock:
            (self._holding.add if held else self._holding.discard)(channel)
            self._changed.notify_all()

    def finished(self, channel: str) -> None:
        """A runner ended (its protocol completed, or the run stopped): nothing left to pause."""
        with self._lock:
            self._finished.add(channel)
            self._asked.discard(channel)
            self._holding.discard(channel)
            self._changed.notify_all()

    def wait_changed(self, channel: str, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` (wall) while ``channel`` is still asked to pause; True once
        it is not (continued)."""
        with self._lock:
            if channel not in self._asked:
                return True
            self._changed.wait(timeout_s)
            return channel not in self._asked

    def state(self) -> str:
        """``""`` (nothing asked), ``pausing`` (some asked channel is not holding yet) or
        ``paused`` (every asked channel holds)."""
        with self._lock:
            if not self._asked:
                return ""
            return "paused" if self._asked <= self._holding else "pausing"

    def channel_state(self, channel: str) -> str:
        """``paused``, ``pausing`` (asked, not yet at a safe point), ``continuing`` (continued,
        not yet left the hold) or ``""``."""
        with self._lock:
            asked, held = channel in self._asked, channel in self._holding
        if asked:
            return "paused" if held else "pausing"
        return "continuing" if held else ""
