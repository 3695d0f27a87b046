"""The acquisition engine: runs a protocol on every source channel of a station at once.

Threads: one :class:`~cellbench.daq.runner.ChannelRunner` per source instrument (the only user of
that connection), one :class:`~cellbench.daq.aux.AuxSampler` per auxiliary reading (chamber
temperature, stack pressure), and the :class:`~cellbench.daq.recorder.Recorder` that batches rows
to the run store and the live subscribers. The thread that calls :meth:`Engine.wait` (the main
thread of ``cellbench run``) only supervises, so signal handlers run promptly.

How a run ends:

* every channel finished its protocol → ``completed``;
* :meth:`Engine.request_stop` (Ctrl-C, SIGTERM, ``cellbench runs stop``, the GUI's stop button
  over the control channel) → each channel stops at its next sample, turns its output off →
  ``stopped``;
* a safety limit breached (by any channel's sample or an auxiliary reading), an instrument that
  stays unreachable past the fault timeout, an interlock, any unexpected error, or a failed write
  to the store → every instrument of the run is put in its safe state at once (before the alarm
  is even written), then the run is ``aborted``.

Whatever the ending, every instrument gets ``safe_state()`` before the run is closed.

:meth:`Engine.request_pause` / :meth:`Engine.request_continue` hold channels at their next safe
point (between steps, or at once in a rest) and let them go on (see :mod:`cellbench.daq.pause`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cellbench.core.clock import ScaledClock, WallClock
from cellbench.core.schema import Cell, RunMeta
from cellbench.daq import steps as st
from cellbench.daq.aux import PRESSURE, RESISTANCE, TEMPERATURE, AuxSampler
from cellbench.daq.engine_options import EngineOptions
from cellbench.daq.link import InstrumentLink, Outage
from cellbench.daq.live import LiveBus, LiveMessage, Subscriber, Subscription
from cellbench.daq.pause import PauseControl
from cellbench.daq.protocol import Limits, Protocol
from cellbench.daq.recorder import LatencyLog, Recorder
from cellbench.daq.runner import ChannelIO, ChannelRunner, ChannelState, Checkpoint
from cellbench.daq.safety import Breach, all_safe, describe
from cellbench.daq.station import SIM_ADDRESS, Station, validate_run
from cellbench.daq.store import RunWriter, create_run

log = logging.getLogger(__name__)

MIN_AUX_WALL_INTERVAL_S = 0.05  # never poll a chamber or gauge faster than this in wall time


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellbench")
    except PackageNotFoundError:
        return "0+unknown"


def new_run_id(name: str = "run") -> str:
    """``YYYYmmddTHHMMSSZ-<name>-<6 hex>``: sorts by start time, unique across lab PCs."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    return f"{stamp}-{safe}-{uuid.uuid4().hex[:6]}"


class Engine:
    """Runs ``protocol`` on ``station``'s instruments and records to a new run under ``out_dir``.

    ``instruments`` maps instrument name → an open driver (the engine opens them from the
    station through the driver registry otherwise; ``addresses`` overrides station addresses,
    e.g. with a simulator's). The engine closes only the drivers it opened.
    """

    #: Set on a resumed run (:class:`cellbench.daq.resume.ResumeGap`): at start it fixes the time
    #: origin so that time columns go on from the last record, and records the outage.
    resume_gap: Any = None

    def __init__(
        self,
        protocol: Protocol,
        station: Station,
        out_dir: Path | str,
        *,
        clock: ScaledClock | None = None,
        instruments: Mapping[str, Any] | None = None,
        addresses: Mapping[str, str] | None = None,
        options: EngineOptions | None = None,
        run_dir_name: str | None = None,
        ground_truth: dict[str, Any] | None = None,
        meta_extra: dict[str, Any] | None = None,
        protocol_info: dict[str, Any] | None = None,
        station_info: dict[str, Any] | None = None,
        writer: RunWriter | None = None,
        resume: Mapping[str, Checkpoint] | None = None,
        test_time_offset_s: float = 0.0,
        latency: LatencyLog | None = None,
    ):
        self.protocol = protocol
        self.station = station
        self.out_dir = Path(out_dir)
        self.clock = clock or WallClock()
        self.options = options or EngineOptions()
        self.run_dir_name = run_dir_name
        self.ground_truth = ground_truth
        self.meta_extra = dict(meta_extra or {})
        self.protocol_info = protocol_info or {}
        self.station_info = station_info or {}
        self._given = dict(instruments or {})
        self._addresses = dict(addresses or {})
        self._writer = writer
        self._resuming = writer is not None
        self._resume = dict(resume or {})
        self._offset = float(test_time_offset_s)
        self.latency = latency

        self.bus = LiveBus()
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self.pause = PauseControl()  # channels asked to pause / holding (any thread)
        self.status_on_stop = "stopped"
        self.limits: Limits = protocol.safety
        self.sample_interval_s = self.options.sample_interval_s or protocol.sample_interval_second
        self.status = "created"
        self.runners: dict[str, ChannelRunner] = {}
        self.links: dict[str, InstrumentLink] = {}
        self.aux: list[AuxSampler] = []
        self.recorder: Recorder | None = None
        self.run_path: Path | None = None
        self._opened: list[Any] = []
        self._abort_lock = threading.Lock()
        self._aborted = False
        self._finished = threading.Event()
        self._t0 = 0.0
        self._unix0 = 0.0
        self._link_channels: dict[str, list[str]] = {}
        self._stop_seen: float | None = None  # monotonic s when the end of the run was seen
        self._forced = False  # outputs forced off after the stop grace

    # --------------------------------------------------------------------- public, any thread

    def subscribe(self, target: Subscriber) -> Subscription:
        """Live batches and events: a callable (called on the publishing engine thread; keep it
        short) or a Queue (see :mod:`cellbench.daq.live`)."""
        return self.bus.subscribe(target)

    @property
    def stop(self) -> threading.Event:
        """Set when the run is ending (runners poll it every sample)."""
        return self.stop_event

    def request_stop(self, reason: str = "stop requested") -> None:
        """Clean stop: channels end at their next sample with outputs off; status ``stopped``."""
        if self.stop_event.is_set():
            return
        self.stop_reason = reason
        self.status_on_stop = "stopped"
        self.stop_event.set()
        if self.recorder is not None:
            self.recorder.event(
                "status",
                f"stop requested: {reason}",
                severity="warning",
                test_time_second=self.test_time(),
            )

    def request_pause(
        self, reason: str = "pause requested", channels: list[str] | None = None
    ) -> list[str]:
        """Hold ``channels`` (all when None) at their next safe point: between steps, or at once
        in a rest; outputs off, still sampled and limit-checked. Returns the channels newly asked.
        Raises :class:`~cellbench.daq.pause.PauseError` for a channel the run does not have."""
        if self.status != "running" or self.stop_event.is_set():
            raise RuntimeError(f"cannot pause: the run is {self._control_state()}")
        new = self.pause.ask_pause(channels)
        if new and self.recorder is not None:
            self.recorder.event(
                "status",
                f"pause requested for {', '.join(new)}: {reason}",
                test_time_second=self.test_time(),
                data={"action": "pause_requested", "channels": new, "reason": reason},
            )
        return new

    def request_continue(
        self, reason: str = "continue requested", channels: list[str] | None = None
    ) -> list[str]:
        """Let paused (or pausing) ``channels`` (all when None) go on; returns those released."""
        released = self.pause.asked_among(channels)
        if released and self.recorder is not None:  # recorded before any channel goes on
            self.recorder.event(
                "status",
                f"continue requested for {', '.join(released)}: {reason}",
                test_time_second=self.test_time(),
                data={"action": "continue_requested", "channels": released, "reason": reason},
            )
        self.pause.ask_continue(channels)
        return released

    def _control_state(self) -> str:
        if self.status != "running":
            return self.status
        if self.stop_event.is_set():
            return "aborting" if self._aborted else "stopping"
        return self.pause.state() or "running"

    def control_status(self) -> dict[str, Any]:
        """What the control channel's ``status`` answers: run, state (``running``, ``pausing``,
        ``paused``, ``stopping``, ``aborting``, or the final status) and every channel's place."""
        channels = {}
        for name, runner in self.runners.items():
            s = runner.state
            channels[name] = {
                "state": "finished"
                if s.finished
                else (self.pause.channel_state(name) or "running"),
                "step_index": s.step_index,
                "step_kind": s.step_kind,
                "step_label": s.step_label,
                "step_remaining_second": s.step_remaining_second,
                "cycle_count": s.cycle_count,
                "test_time_second": s.test_time_second,
                "voltage_volt": None if math.isnan(s.voltage_volt) else s.voltage_volt,
                "current_ampere": None if math.isnan(s.current_ampere) else s.current_ampere,
                "temperature_celsius": _finite(s.temperature_celsius),  # same moment as V, I
                "pressure_megapascal": _finite(s.pressure_megapascal),
                "samples": s.samples,
                "end_reason": s.end_reason,
            }
        return {
            "run_id": self.run_path.name if self.run_path is not None else None,
            "run_path": str(self.run_path) if self.run_path is not None else None,
            "pid": os.getpid(),
            "status": self.status,
            "state": self._control_state(),
            "stop_reason": self.stop_reason,
            "protocol": self.protocol.name,
            "test_time_second": self.test_time() if self.status == "running" else None,
            "channels": channels,
        }

    @property
    def states(self) -> dict[str, ChannelState]:
        return {name: r.state for name, r in self.runners.items()}

    def test_time(self) -> float:
        """Seconds since the run started (simulated seconds on a scaled clock)."""
        return self._offset + (self.clock.now() - self._t0)

    def unix_time(self, test_time_second: float) -> float:
        return self._unix0 + (test_time_second - self._offset)

    # ------------------------------------------------------------------------------ lifecycle

    def run(self) -> str:
        """Start, wait for the end, return the final status."""
        self.start()
        return self.wait()

    def start(self) -> None:
        """Open instruments, create the run, start every thread. Raises before touching
        anything if the protocol does not fit the station."""
        if self.status != "created":
            raise RuntimeError(f"engine already {self.status}: an Engine runs one run, once")
        self.validate()
        try:
            self._open_instruments()
            self._build()
            self._create_or_resume_run()
            self._program_instrument_limits()
            for link in self.links.values():  # known state before anything is sourced
                link.safe_state()
            self.recorder.start()
            for sampler in self.aux:
                sampler.read_now()  # first reading before the first sample
                sampler.start()
        except BaseException as exc:
            if self.recorder is not None:
                self.recorder.event(
                    "fault",
                    f"run could not start: {type(exc).__name__}: {exc}",
                    severity="error",
                    test_time_second=self._offset,
                )
            # A new run that failed to start is closed aborted. A resume that failed stays
            # "running" on disk (its writer lock goes with this process), so that it can be
            # resumed again once the cause is fixed.
            self._teardown(None if self._resuming or self._writer is None else "aborted")
            if self.status == "created":
                self.status = "failed"  # this engine is spent; the run (if any) is closed
            raise
        self.status = "running"
        self._t0 = self.clock.now()  # test time 0 (or the resume offset) is now
        self._unix0 = time.time()
        if self.resume_gap is not None:  # a resumed run: time goes on; the outage is recorded
            self.resume_gap.begin(self)
        self.recorder.event(
            "run_start",
            f"run started: protocol {self.protocol.name!r} on {', '.join(self.runners)}",
            test_time_second=self.test_time(),
            data={"channels": list(self.runners), "limits": describe(self.limits)},
        )
        self.bus.publish(LiveMessage("status", status="running"))
        for runner in self.runners.values():
            runner.thread.start()

    def wait(self, timeout: float | None = None) -> str:
        """Supervise until every channel ends; close the run; return its status.

        With ``timeout`` (wall s) returns ``"running"`` if the run is still going.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            alive = [r for r in self.runners.values() if r.thread.is_alive()]
            if not alive:
                break
            if self.recorder is not None and self.recorder.error is not None and not self._aborted:
                self.fault(self.recorder.error, "")
            for sampler in self.aux:  # a silent chamber: its own thread is stuck in the call
                ended = self._aborted or self.stop_event.is_set()
                breach = None if ended else sampler.stale_breach()
                if breach is not None:
                    self._on_aux_breach(breach, sampler.link.name)
            if self.stop_event.is_set() and self._stopping_given_up():
                break
            if deadline is not None and time.monotonic() > deadline:
                return "running"
            alive[0].thread.join(timeout=0.1)
        if self._finished.is_set():
            return self.status
        if self._aborted:
            status = "aborted"
        elif self.stop_event.is_set():
            status = "stopped"
        else:
            status = "completed"
        self._teardown(status)
        return self.status

    def validate(self) -> None:
        """Check the protocol against the station (resolving C-rates with its cell) and against
        what the engine can drive; raises ProtocolError / EngineConfigError listing every
        problem. Touches no instrument."""
        self.protocol = validate_run(self.protocol, self.station)
        self.limits = self.protocol.safety
        if self.options.sample_interval_s is None:
            self.sample_interval_s = self.protocol.sample_interval_second
        channels = {
            ch: {
                r
                for r in ("source", "impedance", "temperature", "pressure", "press")
                if self.station.for_role(r, ch)
            }
            for ch in self.station.channels()
        }
        if not channels:
            raise st.EngineConfigError(
                f"{self.station.path or 'station'}: no channel (no source or impedance instrument)"
            )
        problems = st.check_engine_fit(self.protocol, channels)
        if problems:
            raise st.EngineConfigError(
                f"protocol {self.protocol.name!r} cannot run on "
                f"{self.station.path or 'this station'}:\n" + "\n".join(problems)
            )

    def _stopping_given_up(self) -> bool:
        """While the run is ending: after ``stop_grace_s`` force every output off (once); after
        twice that, stop waiting for channels stuck in an instrument call (daemon threads)."""
        now = time.monotonic()
        if self._stop_seen is None:
            self._stop_seen = now
            return False
        waited = now - self._stop_seen
        if waited > self.options.stop_grace_s and not self._forced:
            self._forced = True
            log.warning(
                "channels did not stop within %.0f s; forcing outputs off",
                self.options.stop_grace_s,
            )
            all_safe(self.links.values(), block_wait_s=0.0)
        return waited > 2 * self.options.stop_grace_s

    # --------------------------------------------------------------------- faults and safety

    def abort(
        self,
        reason: str,
        *,
        kind: str = "alarm",
        severity: str = "alarm",
        channel: str = "",
        data: dict[str, Any] | None = None,
        instrument: str | None = None,
    ) -> None:
        """Every output to its safe state now — in parallel, the breaching ``instrument`` (or
        ``channel``'s source) first — then record why (fsynced); the run ends ``aborted``."""
        with self._abort_lock:
            if self._aborted:
                return
            self._aborted = True
        self.status_on_stop = "aborted"
        self.stop_reason = reason
        for link in self.links.values():  # refuse new output-on commands first ...
            link.blocked = True
        self.stop_event.set()
        first = self.links.get(instrument or "")
        if first is None and channel in self.runners:
            first = self.runners[channel].io.source
        all_safe(self.links.values(), first=first)  # ... then make every output safe at once
        log.error("run aborted: %s", reason)
        if self.recorder is not None:
            self.recorder.event(
                kind,
                f"run aborted: {reason}",
                severity=severity,
                channel=channel,
                test_time_second=self.test_time(),
                data=data,
            )

    def abort_on_breach(
        self,
        breach: Breach,
        channel: str,
        state: ChannelState | None,
        instrument: str | None = None,
    ) -> None:
        data = breach.as_dict()
        if state is not None:
            data.update(step_index=state.step_index, cycle_count=state.cycle_count)
        self.abort(
            f"safety limit on {channel or 'run'}: {breach.message}",
            channel=channel,
            data=data,
            instrument=instrument,
        )

    def fault(self, exc: BaseException, channel: str) -> None:
        """An error nobody handled: abort safely and record it as a fault."""
        self.abort(
            f"{type(exc).__name__}: {exc}",
            kind="fault",
            severity="error",
            channel=channel,
            data={"error": type(exc).__name__},
        )

    # ------------------------------------------------------------------------------ building

    def _open_instruments(self) -> None:
        from cellbench.drivers.registry import open_instrument

        for spec in self.station.instruments:
            if spec.name in self._given:
                continue
            address = self._addresses.get(spec.name, spec.address)
            if address == SIM_ADDRESS:
                raise st.EngineConfigError(
                    f'instrument {spec.name} is simulated (address = "sim") but no simulator '
                    "address was given: build the run with cellbench.daq.session.prepare()/build(),"
                    " which starts the simulators, or pass addresses={name: address}"
                )
            driver = open_instrument(
                spec.driver,
                address,
                name=spec.name,
                timeout_s=spec.timeout_s,
                **dict(spec.options or {}),
            )
            self._opened.append(driver)
            self._given[spec.name] = driver

    def _link(self, name: str) -> InstrumentLink:
        if name not in self.links:
            self.links[name] = InstrumentLink(
                self._given[name],
                retries=self.options.retries,
                fault_timeout_s=self.options.fault_timeout_s,
                cancel=self.stop_event,
                on_fault=self._on_link_fault,
                on_recover=self._on_link_recover,
            )
        return self.links[name]

    def _build(self) -> None:
        specs = self.station.instruments
        interval = self.sample_interval_s
        aux_interval = self.options.aux_interval_s or max(interval, 1.0)
        if not getattr(self.clock, "lockstep", False):  # a lockstep clock paces polls itself
            aux_interval = max(aux_interval, MIN_AUX_WALL_INTERVAL_S * self.clock.time_scale)
        for spec in specs:
            self._link(spec.name)

        def serving(role: str, channel: str) -> Any | None:
            candidates = self.station.for_role(role, channel)
            exact = [s for s in candidates if s.channel == channel]
            return (exact or list(candidates) or [None])[0]

        samplers: dict[tuple[str, str], AuxSampler] = {}

        def sampler(spec: Any, quantity: str) -> AuxSampler:
            key = (spec.name, quantity)
            if key not in samplers:
                samplers[key] = AuxSampler(
                    self.links[spec.name],
                    quantity,
                    clock=self.clock,
                    interval_s=aux_interval,
                    limits=self.limits,
                    on_breach=self._on_aux_breach,
                    on_lost=self._on_aux_lost,
                    stop=self.stop_event,
                    on_gap=self._on_aux_gap,
                    gap_threshold_s=self.options.gap_threshold_s,
                )
            return samplers[key]

        for channel in self.station.channels():
            src = serving("source", channel)
            imp = serving("impedance", channel)
            temp = serving("temperature", channel)
            pres = serving("pressure", channel)
            ohm = serving("resistance", channel)
            prs = serving("press", channel)
            io = ChannelIO(
                channel=channel,
                source=self.links[src.name] if src else None,
                impedance=self.links[imp.name] if imp else None,
                temperature=sampler(temp, TEMPERATURE) if temp else None,
                pressure=sampler(pres, PRESSURE) if pres else None,
                resistance=sampler(ohm, RESISTANCE) if ohm else None,
                temperature_control=self.links[temp.name] if temp else None,
                press=self.links[prs.name] if prs else None,
            )
            runner = ChannelRunner(self, io, self.protocol)
            runner.resume = self._resume.get(channel)
            self.runners[channel] = runner
            for link_name in {x.name for x in (src, imp, temp, pres, ohm, prs) if x}:
                self._link_channels.setdefault(link_name, []).append(channel)
        self.aux = list(samplers.values())
        self.pause.set_channels(self.runners)

    def _program_instrument_limits(self) -> None:
        """Instruments that keep safety limits of their own (a cycler channel's) get the
        protocol's, before anything is sourced: a dead logger then cannot exceed them."""
        for link in self.links.values():
            program = getattr(link.driver, "program_safety_limits", None)
            if program is not None:
                link.call(
                    program,
                    voltage_min_volt=self.limits.voltage_min_volt,
                    voltage_max_volt=self.limits.voltage_max_volt,
                    current_max_ampere=self.limits.current_max_ampere,
                )

    def _create_or_resume_run(self) -> None:
        self._t0 = self.clock.now()  # provisional: events while starting get sensible times
        self._unix0 = time.time()
        idn = {name: link.call(link.driver.identify) for name, link in self.links.items()}
        if self._writer is None:
            cell = self.station.cell
            meta = RunMeta(
                run_id=self.run_dir_name or new_run_id(self.protocol.name),
                start_time=datetime.now(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                protocol=self.protocol_info,
                station=self.station_info,
                cell=cell if isinstance(cell, Cell) else Cell(),
                software_version=_software_version(),
                ground_truth=self.ground_truth,
                extra={
                    **self.meta_extra,
                    "instruments": idn,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "time_scale": self.clock.time_scale,
                    "channels": list(self.runners),
                },
            )
            self._writer = create_run(
                self.out_dir,
                meta,
                run_dir_name=self.run_dir_name,
                fsync_interval_s=self.options.fsync_interval_s,
            )
        self.run_path = self._writer.path
        self.recorder = Recorder(
            self._writer,
            self.bus,
            batch_interval_s=self.options.batch_interval_s,
            latency=self.latency,
        )

    # ---------------------------------------------------------------------------- callbacks

    def _channel_of(self, link_name: str) -> str:
        chans = self._link_channels.get(link_name, [])
        return chans[0] if len(chans) == 1 else ""

    def _on_link_fault(self, outage: Outage, exc: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.event(
                "fault",
                f"instrument {outage.instrument} not answering, retrying: {outage.first_error}",
                severity="warning",
                channel=self._channel_of(outage.instrument),
                test_time_second=self.test_time(),
                data={"instrument": outage.instrument},
            )

    def _on_link_recover(self, outage: Outage) -> None:
        if self.recorder is not None:
            self.recorder.event(
                "reconnect",
                f"instrument {outage.instrument} back after "
                f"{outage.duration_wall_second:.2f} s (wall), {outage.reconnects} reconnect(s)",
                channel=self._channel_of(outage.instrument),
                test_time_second=self.test_time(),
                data={"instrument": outage.instrument, "wall_second": outage.duration_wall_second},
            )

    def _on_aux_breach(self, breach: Breach, instrument: str) -> None:
        self.abort_on_breach(breach, self._channel_of(instrument), None, instrument)

    def _on_aux_gap(self, instrument: str, quantity: str, gap_s: float, wall_s: float) -> None:
        if self.recorder is not None:
            self.recorder.event(
                "gap",
                f"no {quantity} readings from {instrument} for {gap_s:.3g} s (one reading took "
                f"{wall_s:.2f} s wall); samples meanwhile carry no {quantity}",
                severity="warning",
                channel=self._channel_of(instrument),
                test_time_second=self.test_time(),
                duration_second=gap_s,
                data={"instrument": instrument, "quantity": quantity, "wall_second": wall_s},
            )

    def _on_aux_lost(self, exc: BaseException, instrument: str) -> None:
        if not self.stop_event.is_set():
            self.fault(exc, self._channel_of(instrument))

    # ----------------------------------------------------------------------------- teardown

    def _teardown(self, status: str | None) -> None:
        """Safe state, stop threads, close the run with ``status`` (None: leave it as it is —
        no run was made, or a resume failed to start)."""
        self.stop_event.set()
        # Always, even after an abort made it safe: a rest may have been sourced as 0 A with the
        # output on (Keithley 2450) through a call that does not count as enabling it.
        all_safe(self.links.values(), block_wait_s=0.0)
        for sampler in self.aux:
            if sampler.thread.is_alive():
                sampler.thread.join(timeout=5.0)
        if status is not None and self.recorder is not None:
            self.recorder.try_flush()  # what is pending now; unwritten after it goes in run_end
            failed = [(c, r) for c, r in self.runners.items() if r.error is not None]
            summary = {c: r.state.end_reason for c, r in self.runners.items()}
            self.recorder.event(
                "run_end",
                f"run {status}" + (f": {self.stop_reason}" if self.stop_reason else ""),
                severity="info" if status == "completed" else "warning",
                test_time_second=self.test_time(),
                data={
                    "status": status,
                    "channels": summary,
                    "failed": [c for c, _ in failed],
                    # simulated time given up to stalls of this process (PacedClock), s
                    "clock_behind_second": getattr(self.clock, "behind_s", 0.0),
                    # rows that could not be written (disk full ...), after a last try
                    "rows_not_written": self.recorder.unwritten,
                },
            )
        if self.recorder is not None:
            self.recorder.stop()
        if status is not None and self._writer is not None:
            if self.recorder is not None and self.recorder.error is not None:
                status = "aborted"
            try:
                self._writer.close(status)
            except Exception:
                log.exception("closing the run failed")
                status = "aborted"
        for driver in self._opened:
            try:
                driver.close()
            except Exception as exc:
                log.warning("closing %s: %s", getattr(driver, "name", driver), exc)
        if status is not None:
            self.status = status
            self.bus.publish(LiveMessage("status", status=status))
        self._finished.set()


def _finite(value: float) -> float | None:
    """``value``, or None when it is NaN (not measured): JSON for the control channel."""
    return None if math.isnan(value) else value
