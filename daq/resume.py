"""Continue (or just close) a run whose process died: ``cellbench resume RUN [--close]``.

The store's :func:`~cellbench.daq.store.reopen_run` repairs the folder first (a torn last batch is
cut at its last good frame; every batch that was acknowledged is kept) and records that the run
was interrupted. Then, per channel, the last ``step_start`` event tells where it was: each one
carries a :class:`~cellbench.daq.runner.Checkpoint` (position in the protocol, cycle and step
counters, the cycle's capacity accumulators).

Where a channel restarts:

* a rest, OCV, CC, CV, CC-CV, temperature or EIS step restarts from its beginning (an EIS sweep
  is only ever recorded whole, so a half-done sweep is simply measured again);
* a pulse, GITT or CCD sequence cannot be restarted halfway safely (the cell is no longer in the
  state the sequence began from): inside a loop the channel goes on with the loop's next
  iteration; outside a loop the resume is refused and ``--close`` closes the run as
  ``interrupted``.

Time goes on from the run's last record, and never goes backwards: ``test_time_second``
continues from the newest row (plus the real time that passed, on real instruments; simulated
instruments restart from their initial state, so there the simulated time just goes on), and
``unix_time_second`` is never earlier than the newest row's. The outage is measured in wall time
from the last write to the run's files (their modification time: on a scaled clock the rows' unix
times run ahead of the wall) to the moment the resumed engine starts, and a ``gap`` event records
it with the last recorded and the first new times (:class:`ResumeGap`). The cycle's capacity and
energy counters carry on from the channel's last recorded sample when the step restarts within
the same cycle.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from cellbench.core.errors import CellbenchError
from cellbench.daq.protocol import Loop, Protocol, Step, parse_protocol
from cellbench.daq.run_reader import load_meta
from cellbench.daq.runner import ACCUMULATORS, Checkpoint
from cellbench.daq.session import Session, build
from cellbench.daq.station import Station, parse_station
from cellbench.daq.steps import RESTARTABLE
from cellbench.daq.store import RunWriter, reopen_run

log = logging.getLogger(__name__)

# A run whose process died is still "running" on disk; "interrupted" is a run closed with
# ``--close`` (or by a resume that could not continue): it stays closed.
RESUMABLE_STATUSES = ("running",)


class ResumeError(CellbenchError):
    """The run cannot be resumed (finished, held by another process, or unsafe to continue)."""


def checkpoints(events: pl.DataFrame) -> dict[str, Checkpoint]:
    """The last checkpoint of each channel (from its newest ``step_start`` event)."""
    starts = events.filter((pl.col("kind") == "step_start") & pl.col("data").is_not_null())
    out: dict[str, Checkpoint] = {}
    for channel, data in zip(starts["channel"], starts["data"], strict=True):
        out[channel] = Checkpoint.from_dict(json.loads(data))  # later rows replace earlier
    return out


def _step_at(protocol: Protocol, frames: list[dict[str, int]]) -> Step:
    steps: tuple[Step, ...] = protocol.steps
    step: Step | None = None
    for frame in frames:
        step = steps[int(frame["i"])]
        if isinstance(step, Loop):
            steps = step.steps
    if step is None:
        raise ResumeError("checkpoint names no step")
    return step


def restart_point(protocol: Protocol, cp: Checkpoint) -> Checkpoint:
    """Where a channel restarts: the step itself if restartable, else the loop's next iteration."""
    step = _step_at(protocol, cp.frames)
    if isinstance(step, RESTARTABLE):
        return cp
    loops = [k for k, f in enumerate(cp.frames) if "iter" in f]
    if not loops:
        raise ResumeError(
            f"step {step.index} ({step.kind}) was interrupted and cannot be restarted halfway "
            "safely; close the run with: cellbench resume RUN --close"
        )
    k = loops[-1]
    frames = [dict(f) for f in cp.frames[: k + 1]]
    frames[-1]["iter"] += 1
    # The next iteration begins at the loop body's first step (index 0 inside the loop).
    frames.append({"i": 0})
    # The interrupted sequence passed charge, so the next iteration is a new cycle.
    return Checkpoint(
        frames=frames,
        cycle_count=cp.cycle_count + 1,
        step_count=cp.step_count,
        sweep_index=cp.sweep_index,
        cycle_has_current=False,
        accumulators={},
        loop_first_discharge=cp.loop_first_discharge,
    )


def _loaded(meta: Any, run_path: Path) -> tuple[Protocol, Station]:
    proto = meta.protocol or {}
    sta = meta.station or {}
    if not proto.get("text") or not sta.get("text"):
        raise ResumeError(f"{run_path}: run.json lacks the protocol or station text to resume")
    station_path = Path(sta["path"]) if sta.get("path") else run_path / "station.toml"
    station = parse_station(sta["text"], source=f"{run_path}/run.json station", path=station_path)
    protocol_path = Path(proto["path"]) if proto.get("path") else None
    protocol = parse_protocol(
        proto["text"],
        source=f"{run_path}/run.json protocol",
        cell=station.cell,
        path=protocol_path,
    )
    return protocol, station


def close_interrupted(run_path: Path | str, reason: str = "closed without resuming") -> None:
    """Repair the run and close it as ``interrupted``."""
    writer = _reopen(Path(run_path))
    writer.event("status", reason, severity="warning")
    writer.close("interrupted")


def _reopen(run_path: Path) -> RunWriter:
    meta = load_meta(run_path)
    if meta.status not in RESUMABLE_STATUSES:
        raise ResumeError(
            f"{run_path}: run is {meta.status}; only a run whose process died (status "
            "running, no process writing it) can be resumed"
        )
    return reopen_run(run_path)


@dataclass
class LastRecord:
    """Where a run's record stops (read before the repair writes its own event)."""

    test_time_second: float  # newest test time of any row (samples, events)
    unix_time_second: float  # newest unix time of any row (may run ahead of the wall, simulated)
    wall_second: float  # last modification of the run's table files (time.time() scale)
    samples: dict[str, dict[str, Any]]  # channel -> its newest sample row


def last_record(run_path: Path) -> LastRecord:
    """The newest times recorded in ``run_path`` and each channel's newest sample."""
    from cellbench.daq.store import open_run

    reader = open_run(run_path)
    samples = reader.scan("samples")
    events = reader.read("events")
    t = samples.select(pl.col("test_time_second").max()).collect().item()
    u = samples.select(pl.col("unix_time_second").max()).collect().item()
    last_t = max(float(t or 0.0), float(events["test_time_second"].max() or 0.0))
    last_u = max(float(u or 0.0), float(events["unix_time_second"].max() or 0.0))
    newest = (
        samples.sort("test_time_second").group_by("channel", maintain_order=True).last().collect()
    )
    mtimes = [
        f.stat().st_mtime
        for table in ("samples", "events", "spectra")
        for f in (run_path / table).glob("*")
        if f.is_file()
    ]
    wall = max(mtimes) if mtimes else last_u
    rows = {row["channel"]: row for row in newest.iter_rows(named=True)}
    return LastRecord(last_t, last_u, wall, rows)


def carry_counters(cp: Checkpoint, last: dict[str, Any] | None) -> Checkpoint:
    """The checkpoint with the cycle's accumulators from the channel's newest sample, when that
    sample is of the same cycle (the step restarts, but the charge it passed is not undone)."""
    if last is None or last.get("cycle_count") != cp.cycle_count:
        return cp
    acc = {
        k: float(last[k]) for k in ACCUMULATORS if last.get(k) is not None and last[k] == last[k]
    }
    return replace(cp, accumulators={**cp.accumulators, **acc})


@dataclass
class ResumeGap:
    """The outage of a resumed run; :meth:`begin` runs when the resumed engine starts."""

    last: LastRecord
    simulated: bool
    resume_points: dict[str, list[dict[str, int]]]
    meta_extra: dict[str, Any]

    def begin(self, engine: Any) -> None:
        """Fix the engine's time origin (test time and unix time go on from the last record)
        and record the outage as a ``gap`` event and in run.json's ``extra["resumes"]``."""
        now = time.time()
        last = self.last
        outage = max(0.0, now - last.wall_second)
        # never backwards: a scaled clock's unix times may be ahead of the wall
        unix0 = max(now, last.unix_time_second + 1e-3)
        if self.simulated:
            offset = last.test_time_second  # the simulated cell restarted: its time goes on
        else:  # real instruments: test time is time since the run began, the outage included
            offset = last.test_time_second + max(0.0, unix0 - last.unix_time_second)
        engine._offset = offset
        engine._unix0 = unix0
        engine.recorder.event(
            "gap",
            f"run resumed after {outage:.1f} s (wall) without recording: last record at test "
            f"time {last.test_time_second:.3f} s, first new at {offset:.3f} s"
            + (
                "; simulated instruments restarted from their initial state"
                if self.simulated
                else ""
            ),
            severity="warning",
            test_time_second=offset,
            duration_second=outage,
            data={
                "outage_wall_second": outage,
                "last_test_time_second": last.test_time_second,
                "last_unix_time_second": last.unix_time_second,
                "last_write_unix_second": last.wall_second,
                "first_test_time_second": offset,
                "first_unix_time_second": unix0,
                "resume_points": self.resume_points,
            },
        )
        engine.recorder.writer.flush()
        this = {"at_test_time_second": offset, "outage_wall_second": outage}
        resumes = [*self.meta_extra.get("resumes", []), this]
        engine.recorder.writer.update_meta(extra={**self.meta_extra, "resumes": resumes})


def prepare_resume(
    run_path: Path | str,
    *,
    time_scale: float | None = None,
    options: dict[str, Any] | None = None,
) -> Session:
    """Reopen ``run_path`` and build the session that continues it (not started yet)."""
    run_path = Path(run_path)
    meta = load_meta(run_path)
    if meta.status not in RESUMABLE_STATUSES:
        raise ResumeError(
            f"{run_path}: run is {meta.status}; only a run whose process died (status "
            "running, no process writing it) can be resumed"
        )
    protocol, station = _loaded(meta, run_path)
    last = last_record(run_path)  # before the repair writes its own event
    writer = reopen_run(run_path)
    try:
        from cellbench.daq.store import open_run

        events = open_run(run_path).read("events")
        found = checkpoints(events)
        resume = {
            ch: carry_counters(restart_point(protocol, cp), last.samples.get(ch))
            for ch, cp in found.items()
        }
        simulated = bool(station.simulated)
        session = build(
            protocol,
            station,
            run_path.parent,
            time_scale=time_scale,
            options=options,
            writer=writer,
            resume=resume,
            test_time_offset_s=last.test_time_second,
        )
        session.engine.resume_gap = ResumeGap(
            last, simulated, {ch: cp.frames for ch, cp in resume.items()}, dict(meta.extra)
        )
    except BaseException:
        writer.close("interrupted")
        raise
    return session
