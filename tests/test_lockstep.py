"""The lockstep clock: simulated time moves only when every actor waits, actors act one at a time
in (time, registration) order, a simulator's sleep stands in for the actor it answers."""

from __future__ import annotations

import queue
import threading
import time

from cellbench.daq.lockstep import LockstepClock, register_actor


def _actor(clock, token, name, interval, until, log, lock):
    token.bind()
    try:
        t = clock.now()
        while t < until:
            with lock:
                log.append((clock.now(), name))
            time.sleep(0.001)  # work that takes wall time: the clock must not move meanwhile
            t += interval
            token.wait_until(t)
    finally:
        token.finish()


def test_actors_interleave_in_time_then_registration_order():
    clock = LockstepClock(1e6)
    log: list[tuple[float, str]] = []
    lock = threading.Lock()
    tokens = [clock.register() for _ in range(2)]  # both registered before either starts
    threads = [
        threading.Thread(target=_actor, args=(clock, tokens[0], "aux", 30.0, 120.0, log, lock)),
        threading.Thread(target=_actor, args=(clock, tokens[1], "run", 20.0, 120.0, log, lock)),
    ]
    for th in reversed(threads):  # start order does not matter
        th.start()
        time.sleep(0.01)
    for th in threads:
        th.join(timeout=10)
    expected = sorted(
        [(30.0 * k, "aux") for k in range(4)] + [(20.0 * k, "run") for k in range(6)],
        key=lambda e: (e[0], e[1] != "aux"),  # at equal times the first registered acts first
    )
    assert log == expected


def test_a_simulator_sleep_stands_in_for_the_actor_waiting_on_it():
    clock = LockstepClock(1e6)
    requests: queue.Queue = queue.Queue()
    replies: queue.Queue = queue.Queue()

    def server() -> None:  # not an actor: a simulated instrument measuring for 5 s
        while (item := requests.get()) is not None:
            clock.sleep(5.0)
            replies.put((item, clock.now()))

    seen: list[tuple[str, float]] = []
    token_run, token_aux = clock.register(), clock.register()

    def run() -> None:
        token_run.bind()
        requests.put("sweep")
        seen.append(replies.get(timeout=10))
        token_run.finish()

    def aux() -> None:
        token_aux.bind()
        token_aux.wait_until(2.0)  # due while the instrument measures
        seen.append(("aux", clock.now()))
        token_aux.finish()

    threads = [threading.Thread(target=f) for f in (server, run, aux)]
    for th in threads:
        th.start()
    threads[1].join(timeout=10)
    threads[2].join(timeout=10)
    requests.put(None)
    threads[0].join(timeout=10)
    assert seen == [("aux", 2.0), ("sweep", 5.0)]


def test_a_waiting_actor_sees_its_cancel_and_an_unstarted_one_holds_the_clock():
    clock = LockstepClock(1e6)
    waiting, late = clock.register(), clock.register()
    cancel = threading.Event()
    result: list[bool] = []

    def body() -> None:
        waiting.bind(cancel)
        result.append(waiting.wait_until(100.0, cancel))

    th = threading.Thread(target=body)
    th.start()
    time.sleep(0.3)
    assert clock.now() == 0.0  # `late` has not started: its first act comes first
    cancel.set()
    th.join(timeout=5)
    assert result == [True] and clock.now() == 0.0
    late.finish()  # never started: the clock no longer waits for it


def test_other_clocks_get_no_actor_token():
    from cellbench.core.clock import ScaledClock

    assert register_actor(ScaledClock(10.0)) is None
    assert register_actor(LockstepClock(10.0)) is not None


PAUSED_REST = """
name = "rests"
sample_interval = "10 s"

[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"

[[step]]
type = "rest"
duration = "2 h"
"""


def test_a_repeatable_run_pauses_and_continues_without_stalling_the_clock(tmp_path):
    from pathlib import Path

    from cellbench.daq.session import SessionOptions, prepare

    station = Path(__file__).resolve().parents[1] / "fixtures" / "stations" / "demo_station.toml"
    protocol = tmp_path / "rests.toml"
    protocol.write_text(PAUSED_REST, encoding="utf-8")
    session = prepare(protocol, station, tmp_path, SessionOptions(time_scale=2000, repeatable=True))
    engine = session.engine
    try:
        engine.start()
        engine.request_pause("test")
        deadline = time.monotonic() + 20
        while engine.pause.channel_state("cell1") != "paused" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.pause.channel_state("cell1") == "paused"
        t_paused = engine.clock.now()
        time.sleep(0.2)  # simulated time goes on while paused (sampled, as on a real bench)
        assert engine.clock.now() > t_paused
        engine.request_continue("test")
        assert engine.wait(timeout=60) == "completed"
    finally:
        session.close()
    assert engine.clock.forced_moves == 0
