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

Time goes on from the run's last record: ``test_time_second`` continues from the newest row (plus
the real time that passed, on real instruments), and a ``gap`` event records the outage.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

from cellbench.core.errors import CellbenchError
from cellbench.daq.protocol import Loop, Protocol, Step, parse_protocol
from cellbench.daq.run_reader import load_meta
from cellbench.daq.runner import Checkpoint
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
    writer = reopen_run(run_path)
    try:
        from cellbench.daq.store import open_run

        reader = open_run(run_path)
        events = reader.read("events")
        samples_time = reader.scan("samples").select(pl.col("test_time_second").max()).collect()
        last_t = max(
            float(samples_time.item() or 0.0),
            float(events["test_time_second"].max() or 0.0),
        )
        last_unix = max(
            float(
                reader.scan("samples").select(pl.col("unix_time_second").max()).collect().item()
                or 0.0
            ),
            float(events["unix_time_second"].max() or 0.0),
        )
        found = checkpoints(events)
        resume = {ch: restart_point(protocol, cp) for ch, cp in found.items()}
        simulated = bool(station.simulated)
        outage = max(0.0, time.time() - last_unix) if last_unix else 0.0
        # Real instruments: test time is time since the run began, so the outage counts.
        offset = last_t if simulated else last_t + outage
        writer.event(
            "gap",
            f"run resumed after {outage:.1f} s (wall) without recording"
            + ("; simulated instruments restarted from their initial state" if simulated else ""),
            severity="warning",
            test_time_second=offset,
            duration_second=offset - last_t if not simulated else outage,
            data={
                "resume_points": {ch: cp.frames for ch, cp in resume.items()},
                "last_test_time_second": last_t,
            },
        )
        this = {"at_test_time_second": offset, "outage_wall_second": outage}
        resumes = [*meta.extra.get("resumes", []), this]
        writer.update_meta(extra={**meta.extra, "resumes": resumes})
        session = build(
            protocol,
            station,
            run_path.parent,
            time_scale=time_scale,
            options=options,
            writer=writer,
            resume=resume,
            test_time_offset_s=offset,
        )
    except BaseException:
        writer.close("interrupted")
        raise
    return session
