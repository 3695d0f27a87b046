"""A cellbench protocol as a Neware BTS 8.x step file (the XML that BTS Client saves and the BTS
server runs), and the refusal, at its line, of what a step file cannot say.

The structure is that of the step files BTS Client 8.0 writes (``<root><config type="Step File"
version="17">`` with ``Head_Info``, ``Whole_Prt`` and ``Step_Info``; one ``StepN Step_ID="N"
Step_Type="T"`` per step with ``Limit/Main`` values and, where set, ``Record/Main``), read from
public step files and the tools that write them. Units in the file: current mA, voltage 0.1 mV,
time ms, capacity mA s.

============================  ==============================================================
protocol step                 BTS step
============================  ==============================================================
rest, ocv                     4 rest (``Time``)
cc (charge / discharge)       1 CC charge / 2 CC discharge: ``Curr``; ends ``Stop_Volt``
                              (voltage_above on charge, voltage_below on discharge), ``Time``,
                              ``Cap``
cv                            3 CV charge (voltage above the run's window middle) or 19 CV
                              discharge: ``Volt``, ``Curr`` (the current limit), ``Stop_Curr``,
                              ``Time``
cccv                          7 CC-CV charge / 20 CC-CV discharge: ``Curr``, ``Volt``,
                              ``Stop_Curr``, ``Time``
loop (repeat = N)             its steps, then 5 cycle: ``Start_Step`` (the loop's first step),
                              ``Cycle_Count`` N; loops nest
(end of protocol)             6 end
[safety] voltage window       ``Whole_Prt/Protect/Main/Volt`` ``Upper`` / ``Lower``
sample_interval, record_every ``Whole_Prt/Record/Main/Time``, per step ``Record/Main/Time``
============================  ==============================================================

Refused (:class:`NewareStepError`, every problem with its file and line): EIS, pulse/HPPC,
GITT, critical-current staircases and temperature steps; a loop ``until`` (BTS cycles a fixed
number of times); a cc end against the current's direction (a charge ending on a voltage below)
or on current; ``record_dv``; a step's own safety limits (BTS protection is per file here). The
run's current and temperature limits are not written into the file: the logger checks them on
every record.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cellbench.core.errors import CellbenchError
from cellbench.daq.protocol import CC, CCCV, CV, Loop, Ocv, Protocol, Rest, Step

#: BTS Step_Type codes used (NewareNDA's state table agrees: 1 CC_Chg, 2 CC_DChg, 3 CV_Chg,
#: 4 Rest, 5 Cycle, 7 CCCV_Chg, 19 CV_DChg, 20 CCCV_DChg; 6 ends a step file)
CC_CHARGE, CC_DISCHARGE, CV_CHARGE, REST, CYCLE, END = 1, 2, 3, 4, 5, 6
CCCV_CHARGE, CV_DISCHARGE, CCCV_DISCHARGE = 7, 19, 20


class NewareStepError(CellbenchError):
    """The protocol cannot be written as a BTS step file; names every step at its line.

    ``problems``: ``(line, step, why)`` of each."""

    problems: list[tuple[int, str, str]]


@dataclass
class StepFile:
    """A translated protocol: the XML text and, per BTS Step_ID, the protocol step index."""

    xml: str
    step_index: dict[int, int] = field(default_factory=dict)  # Step_ID -> protocol step index
    kinds: dict[int, str] = field(default_factory=dict)  # Step_ID -> protocol step kind

    def write(self, path: Path | str) -> Path:
        """Write the file (UTF-8) where the BTS server can read it; returns the path."""
        out = Path(path)
        out.write_text(self.xml, encoding="utf-8")
        return out


def _ma(ampere: float) -> str:
    return f"{abs(ampere) * 1000.0:.6g}"


def _dmv(volt: float) -> str:
    return str(round(volt * 1e4))


def _ms(second: float) -> str:
    return str(round(second * 1000.0))


def _mas(ampere_hour: float) -> str:
    return f"{abs(ampere_hour) * 3.6e6:.6g}"


class _Writer:
    def __init__(self, protocol: Protocol, max_loop_iterations: int | None = None):
        self.protocol = protocol
        self.cap = max_loop_iterations
        self.where = str(protocol.path) if protocol.path else protocol.name
        self.problems: list[tuple[int, str, str]] = []  # (line, step, why)
        self.steps: list[ET.Element] = []
        self.step_index: dict[int, int] = {}
        self.kinds: dict[int, str] = {}
        lim = protocol.safety
        lo, hi = lim.voltage_min_volt, lim.voltage_max_volt
        self.middle = (lo + hi) / 2 if lo is not None and hi is not None else None

    def refuse(self, step: Step, why: str) -> None:
        self.problems.append((step.line, f"step {step.index} ({step.kind})", why))

    def add(self, step: Step, code: int, main: dict[str, str], other: dict[str, str] | None = None
            ) -> ET.Element:  # fmt: skip
        number = len(self.steps) + 1
        el = ET.Element(f"Step{number}", Step_ID=str(number), Step_Type=str(code))
        record = step.record_interval_second
        if record is not None:
            rec = ET.SubElement(ET.SubElement(el, "Record"), "Main")
            ET.SubElement(rec, "Time", Value=_ms(record))
        limit = ET.SubElement(el, "Limit")
        if main:
            m = ET.SubElement(limit, "Main")
            for tag, value in main.items():
                ET.SubElement(m, tag, Value=value)
        if other:
            o = ET.SubElement(limit, "Other")
            for tag, value in other.items():
                ET.SubElement(o, tag, Value=value)
        self.steps.append(el)
        self.step_index[number] = step.index
        self.kinds[number] = step.kind
        return el

    def common(self, step: Step) -> bool:
        ok = True
        if step.record_dv_volt is not None:
            self.refuse(step, "record_dv cannot be written into a BTS step file")
            ok = False
        if step.limits is not None and not step.limits.is_empty():
            self.refuse(step, "a step's own safety limits cannot be written into a BTS step file"
                        " (put them in [safety])")  # fmt: skip
            ok = False
        return ok

    def block(self, steps: tuple[Step, ...]) -> None:
        for step in steps:
            self.step(step)

    def step(self, step: Step) -> None:
        if isinstance(step, Loop):
            self.loop(step)
            return
        if not self.common(step):
            return
        if isinstance(step, Rest | Ocv):
            self.add(step, REST, {"Time": _ms(step.duration_second)})
        elif isinstance(step, CC):
            self.cc(step)
        elif isinstance(step, CV):
            self.cv(step)
        elif isinstance(step, CCCV):
            main = {
                "Curr": _ma(step.current_ampere),
                "Volt": _dmv(step.voltage_volt),
                "Stop_Curr": _ma(step.end_current_ampere),
            }
            if step.max_duration_second is not None:
                main["Time"] = _ms(step.max_duration_second)
            code = CCCV_CHARGE if step.current_ampere > 0 else CCCV_DISCHARGE
            self.add(step, code, main)
        else:
            self.refuse(step, f"a {step.kind} step has no BTS step type (runs on a source-measure "
                        "unit or potentiostat channel instead)")  # fmt: skip

    def cc(self, step: CC) -> None:
        if step.current_ampere == 0:
            self.refuse(step, "a cc step at 0 A: write a rest step")
            return
        charging = step.current_ampere > 0
        ends = step.ends
        main = {"Curr": _ma(step.current_ampere)}
        ok = True
        if ends.current_below_ampere is not None:
            self.refuse(step, "a BTS CC step cannot end on current (use cccv)")
            ok = False
        stop, against = (
            (ends.voltage_above_volt, ends.voltage_below_volt)
            if charging
            else (ends.voltage_below_volt, ends.voltage_above_volt)
        )
        if against is not None:
            side = "below" if charging else "above"
            self.refuse(
                step,
                f"a BTS CC {'charge' if charging else 'discharge'} ends on one "
                f"voltage, in the current's direction: voltage_{side} cannot be written",
            )
            ok = False  # fmt: skip
        if stop is not None:
            main["Stop_Volt"] = _dmv(stop)
        if ends.time_second is not None:
            main["Time"] = _ms(ends.time_second)
        if ends.capacity_ampere_hour is not None:
            main["Cap"] = _mas(ends.capacity_ampere_hour)
        if len(main) == 1:
            self.refuse(step, "the step has no end a BTS CC step can hold (voltage, time or "
                        "capacity)")  # fmt: skip
            ok = False
        if ok:
            self.add(step, CC_CHARGE if charging else CC_DISCHARGE, main)

    def cv(self, step: CV) -> None:
        ends = step.ends
        if ends.voltage_above_volt is not None or ends.voltage_below_volt is not None:
            self.refuse(step, "a BTS CV step cannot end on voltage")
            return
        if ends.current_below_ampere is None and ends.time_second is None:
            self.refuse(step, "a BTS CV step needs a current or time end")
            return
        main = {"Curr": _ma(step.current_limit_ampere), "Volt": _dmv(step.voltage_volt)}
        if ends.current_below_ampere is not None:
            main["Stop_Curr"] = _ma(ends.current_below_ampere)
        if ends.time_second is not None:
            main["Time"] = _ms(ends.time_second)
        if ends.capacity_ampere_hour is not None:
            main["Cap"] = _mas(ends.capacity_ampere_hour)
        if self.middle is None:
            self.refuse(step, "a BTS CV step is a charge or a discharge: set [safety] "
                        "voltage_min and voltage_max to tell which")  # fmt: skip
            return
        code = CV_CHARGE if step.voltage_volt >= self.middle else CV_DISCHARGE
        self.add(step, code, main)

    def loop(self, loop: Loop) -> None:
        if loop.until is not None and not loop.until.is_empty():
            self.refuse(loop, "BTS cycles a fixed number of times: a loop 'until' cannot be "
                        "written into a step file (use repeat = N)")  # fmt: skip
            return
        if loop.repeat is None or loop.repeat < 1:
            self.refuse(loop, "a BTS cycle needs repeat = N")
            return
        first = len(self.steps) + 1
        before = len(self.problems)
        self.block(loop.steps)
        if len(self.problems) > before:
            return
        if len(self.steps) < first:
            self.refuse(loop, "the loop has no step a BTS cycle can repeat")
            return
        count = loop.repeat if self.cap is None else min(loop.repeat, self.cap)
        self.add(loop, CYCLE, {}, {"Start_Step": str(first), "Cycle_Count": str(count)})


def protocol_to_step_file(
    protocol: Protocol, *, creator: str = "cellbench", max_loop_iterations: int | None = None
) -> StepFile:
    """The BTS step file of a protocol whose C-rates are resolved (after ``validate_run``);
    ``max_loop_iterations`` caps every cycle count (a quick trial of a long protocol).

    Raises :class:`NewareStepError` listing every step BTS cannot express, each at its line.
    """
    w = _Writer(protocol, max_loop_iterations)
    w.block(protocol.steps)
    if not w.steps and not w.problems:
        w.problems.append((0, "protocol", "no step to write"))
    if w.problems:
        error = NewareStepError(
            f"protocol {protocol.name!r} cannot run as a Neware BTS step file:\n"
            + "\n".join(f"{w.where}:{line}: {where}: {why}" for line, where, why in w.problems)
        )
        error.problems = list(w.problems)
        raise error
    end_id = len(w.steps) + 1
    w.steps.append(ET.Element(f"Step{end_id}", Step_ID=str(end_id), Step_Type=str(END)))

    root = ET.Element("root")
    config = ET.SubElement(
        root,
        "config",
        type="Step File",
        version="17",
        client_version="cellbench",
        date=datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
        Guid=str(uuid.uuid4()),
    )
    head = ET.SubElement(config, "Head_Info")
    ET.SubElement(head, "Operate", Value="66")
    ET.SubElement(head, "Scale", Value="1")
    ET.SubElement(head, "Start_Step", Value="1", Hide_Ctrl_Step="0")
    ET.SubElement(head, "Creator", Value=creator)
    ET.SubElement(head, "Remark", Value=protocol.name)
    whole = ET.SubElement(config, "Whole_Prt")
    lim = protocol.safety
    if lim.voltage_min_volt is not None and lim.voltage_max_volt is not None:
        volt = ET.SubElement(ET.SubElement(ET.SubElement(whole, "Protect"), "Main"), "Volt")
        ET.SubElement(volt, "Upper", Value=_dmv(lim.voltage_max_volt))
        ET.SubElement(volt, "Lower", Value=_dmv(lim.voltage_min_volt))
    record = ET.SubElement(ET.SubElement(whole, "Record"), "Main")
    ET.SubElement(record, "Time", Value=_ms(protocol.sample_interval_second))
    info = ET.SubElement(config, "Step_Info", Num=str(len(w.steps)))
    info.extend(w.steps)
    ET.indent(root, space="  ")
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
    return StepFile(text + "\n", w.step_index, w.kinds)
