"""A simulated clock that turns only when every acquisition thread waits: repeatable simulations.

On a :class:`~cellbench.core.clock.ScaledClock` simulated time follows the wall clock, so when a
sample is taken depends on how busy the machine is: at a time scale of 20 000 a 1 ms late
wake-up is 20 simulated seconds, the cell goes on discharging meanwhile, and two runs of the same
protocol on the same seed end their steps on different samples (the ``cellbench demo`` capacity
moved by 1.5 % from one run to the next).

:class:`LockstepClock` makes the simulated data a function of the protocol and the seed only.
Simulated time stands still while any *actor* (a channel runner, an auxiliary sampler: the threads
that decide when to measure) is working, and moves, when every actor waits, to the earliest wake-up
asked for. Actors are woken one at a time, in order of wake-up time and then of registration, so
two actors due at the same instant (a temperature reading and a sample) always act in the same
order. A simulator that needs simulated time to pass while it answers (an impedance analyser
measuring at 1 Hz calls :meth:`LockstepClock.sleep` in its server thread) is a *proxy*: it stands
for the actor blocked on its reply, so time moves when the number of busy actors is no more than
the number of sleeping proxies. Time also moves no faster than ``time_scale`` simulated seconds per
wall second, so a live display still shows the run unfold; a loaded machine only makes it slower.

Limits: a simulator that waits in wall time for simulated time to pass (rather than calling
:meth:`sleep`) would wait for ever, so after ``stall_wall_s`` of wall time without progress the
clock moves anyway and logs a warning (the run is then no longer guaranteed repeatable).

Threads use it through :func:`register_actor`, which returns ``None`` on any other clock so that
callers keep their wall-time waits there.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from cellbench.core.clock import ScaledClock

log = logging.getLogger(__name__)

#: Wall seconds a waiting thread polls its cancel event (a stop is seen within this).
_POLL_WALL_S = 0.05

#: Simulators that wait in wall time for simulated time to pass (the EmStat runs its
#: MethodSCRIPT on its own thread): a lockstep clock would stand still under them.
WALL_TIMED_SIMULATORS: tuple[str, ...] = ("emstat",)


@dataclass(order=True)
class _Sleeper:
    wake_s: float
    seq: int
    actor: bool = field(compare=False)
    released: bool = field(default=False, compare=False)


class ActorToken:
    """One registered actor: bind it in the thread that acts, and wait through it."""

    def __init__(self, clock: LockstepClock, seq: int):
        self.clock = clock
        self.seq = seq
        self.started = False
        self.done = False

    def bind(self, cancel: threading.Event | None = None) -> bool:
        """Call first thing in the actor's thread: waits for the actor's first turn, after which
        it counts as busy until it waits; True if ``cancel`` was set first."""
        return self.clock._bind(self, cancel)

    def finish(self) -> None:
        """Call when the actor's thread ends (idempotent): the clock no longer waits for it."""
        self.clock._finish(self)

    def wait_until(self, clock_s: float, cancel: threading.Event | None = None) -> bool:
        """Wait until the clock reads ``clock_s`` (and it is this actor's turn: waiting for the
        present instant lets actors registered earlier act first); True if ``cancel`` was set
        first."""
        return self.clock._wait(clock_s, self.seq, actor=True, cancel=cancel)


class LockstepClock(ScaledClock):
    """Simulated seconds that advance only when every registered actor waits (see module doc).

    Args:
        time_scale: at most this many simulated seconds per wall second.
        start_second: the first reading.
        stall_wall_s: wall seconds a waiter waits for busy actors before the clock moves anyway.
    """

    lockstep = True

    def __init__(
        self, time_scale: float = 1.0, *, start_second: float = 0.0, stall_wall_s: float = 30.0
    ):
        super().__init__(time_scale, start_second=start_second)
        self.stall_wall_s = float(stall_wall_s)
        self._t = float(start_second)
        self._cond = threading.Condition(threading.Lock())
        self._sleepers: list[_Sleeper] = []
        self._pending = 0  # registered actors whose thread has not bound yet
        self._busy = 0  # bound actors not waiting
        self._seq = itertools.count()
        self._proxy_seq = itertools.count(1 << 40)  # proxies sort after actors at equal times
        self._local = threading.local()
        self._pace_wall = time.monotonic()  # the wall time at which the clock read _pace_sim
        self._pace_sim = self._t
        self.behind_s = 0.0  # simulated seconds the pace fell behind time_scale (load)
        self.forced_moves = 0  # times the clock moved with a busy actor (stall fallback)

    # ------------------------------------------------------------------------------ readings
    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time: as an actor in an actor's thread, else as a proxy."""
        token = getattr(self._local, "token", None)
        target = self._t + max(0.0, seconds)
        if token is not None:
            token.wait_until(target)
        elif seconds > 0:
            self._wait(target, next(self._proxy_seq), actor=False, cancel=None)

    # ------------------------------------------------------------------------------ actors
    def register(self) -> ActorToken:
        """A new actor; it counts as busy (time stands still) until its thread waits or ends."""
        with self._cond:
            self._pending += 1
            return ActorToken(self, next(self._seq))

    def _bind(self, token: ActorToken, cancel: threading.Event | None) -> bool:
        with self._cond:
            if token.started:
                return False
            token.started = True
            self._pending -= 1
            self._busy += 1
            self._local.token = token
            self._cond.notify_all()
        # the first act too waits for its turn: actors due at the same instant act one at a
        # time, in registration order, whichever thread the OS started first
        return self._wait(self._t, token.seq, actor=True, cancel=cancel)

    def _finish(self, token: ActorToken) -> None:
        with self._cond:
            if token.done:
                return
            token.done = True
            if token.started:
                self._busy -= 1
            else:
                self._pending -= 1
            if getattr(self._local, "token", None) is token:
                self._local.token = None
            self._cond.notify_all()

    # ------------------------------------------------------------------------------ waiting
    def _wait(self, clock_s: float, seq: int, *, actor: bool, cancel: threading.Event | None):
        with self._cond:
            if clock_s < self._t:
                return False
            me = _Sleeper(clock_s, seq, actor)
            self._sleepers.append(me)
            if actor:
                self._busy -= 1
            stalled_since = time.monotonic()
            try:
                while not me.released:
                    if cancel is not None and cancel.is_set():
                        return True
                    wait = self._step()
                    if me.released:
                        break
                    if wait is None and time.monotonic() - stalled_since > self.stall_wall_s:
                        self._force()
                        stalled_since = time.monotonic()
                        continue
                    if wait is not None:
                        stalled_since = time.monotonic()
                    self._cond.wait(min(_POLL_WALL_S, wait) if wait is not None else _POLL_WALL_S)
                return False
            finally:
                if not me.released:  # cancelled (or an exception): leave the queue, busy again
                    self._sleepers.remove(me)
                    if actor:
                        self._busy += 1
                    self._cond.notify_all()

    def _proxies(self) -> int:
        return sum(1 for s in self._sleepers if not s.actor)

    def _step(self) -> float | None:
        """Release the earliest sleeper if every actor waits and its wall time has come.

        Returns 0 after releasing, the wall seconds still to wait for the pace, or None when
        busy actors hold the clock. Called with the condition held."""
        if not self._sleepers:
            return None
        first = min(self._sleepers)
        if self._busy > self._proxies():
            return None
        if self._pending and (first.actor or self._busy):
            # an actor not started yet: its first act comes before anyone's next; only a
            # simulator answering the thread that starts the actors (the engine's set-up
            # readings) may move the clock meanwhile
            return None
        due_wall = self._pace_wall + (first.wake_s - self._pace_sim) / self.time_scale
        now_wall = time.monotonic()
        if due_wall > now_wall:
            return due_wall - now_wall
        if now_wall - due_wall > 0.05:  # fell behind (load): keep pace from here, not catch up
            self.behind_s += (now_wall - due_wall) * self.time_scale
            self._pace_wall, self._pace_sim = now_wall, first.wake_s
        self._release(first)
        return 0.0

    def _release(self, sleeper: _Sleeper) -> None:
        self._sleepers.remove(sleeper)
        sleeper.released = True
        if sleeper.actor:
            self._busy += 1
        self._t = max(self._t, sleeper.wake_s)
        self._cond.notify_all()

    def _force(self) -> None:
        if not self._sleepers:
            return
        self.forced_moves += 1
        log.warning(
            "lockstep clock: no progress for %.0f s of wall time with %d busy actor(s); "
            "moving on (this run is no longer guaranteed repeatable)",
            self.stall_wall_s,
            self._busy,
        )
        self._release(min(self._sleepers))


def register_actor(clock: ScaledClock) -> ActorToken | None:
    """A token for a thread that decides when to measure, on a :class:`LockstepClock`; else None."""
    if isinstance(clock, LockstepClock):
        return clock.register()
    return None
