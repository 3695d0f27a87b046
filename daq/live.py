"""Live subscribers: the in-process feed of a running engine (terminal display, GUI, tests).

The engine publishes every batch it has just made durable (from its recorder thread) and every
event as it happens (from the thread that records it: a channel's, an auxiliary sampler's, the
supervisor's). A subscriber is either a callable (called on the publishing thread: keep it short
and thread-safe, e.g. emit a Qt signal) or a :class:`queue.Queue` (messages are put without
blocking; when
a bounded queue is full the oldest message is dropped and counted, so a stalled consumer can never
stall acquisition).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

log = logging.getLogger(__name__)

MessageKind = Literal["samples", "spectra", "event", "status"]


@dataclass(frozen=True)
class LiveMessage:
    """One thing that happened.

    ``samples``/``spectra``: ``frame`` holds the rows just written (``schema`` columns).
    ``event``: ``event`` holds the event's fields (``events`` columns).
    ``status``: ``status`` is the run status (``running``, ``completed``, ``stopped``, ``aborted``).
    """

    kind: MessageKind
    frame: pl.DataFrame | None = None
    event: dict[str, Any] = field(default_factory=dict)
    status: str = ""


Subscriber = Callable[[LiveMessage], None] | queue.Queue


class Subscription:
    """Handle returned by :meth:`LiveBus.subscribe`; ``close()`` (or ``with``) unsubscribes."""

    def __init__(self, bus: LiveBus, target: Subscriber):
        self._bus = bus
        self.target = target
        self.dropped = 0  # messages dropped because a bounded queue was full

    def close(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveBus:
    """Fan-out of :class:`LiveMessage` to subscribers; thread-safe."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, target: Subscriber) -> Subscription:
        """Add a callable or a queue; returns the subscription handle."""
        if not (callable(target) or isinstance(target, queue.Queue)):
            raise TypeError(f"subscriber must be callable or a queue.Queue, got {type(target)}")
        sub = Subscription(self, target)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, message: LiveMessage) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            target = sub.target
            if isinstance(target, queue.Queue):
                _put_dropping_oldest(target, message, sub)
                continue
            try:
                target(message)
            except Exception:  # a broken display must never stop acquisition
                log.exception("live subscriber %r failed; it stays subscribed", target)


def _put_dropping_oldest(q: queue.Queue, message: LiveMessage, sub: Subscription) -> None:
    while True:
        try:
            q.put_nowait(message)
            return
        except queue.Full:
            try:
                q.get_nowait()
                sub.dropped += 1
            except queue.Empty:
                pass
