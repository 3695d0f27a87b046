"""A simulated Neware BTS 8.x server: the XML API on loopback, channels that run step files.

Channels are addressed device-subdevice-channel; by default one device (``devtype`` 27,
``devid`` 21, as in the replies captured from a BTS 8.0 server that ``aurora-neware`` tests with)
with ``subdevices`` x ``channels_per_subdevice`` channels. The channel ``cell_channel`` (default
``"21-1-1"``) holds the station's shared simulated cell; every other channel holds a cell of its
own with the same parameters on the same clock.

``start`` reads the step file from disk at the path the client sends, as the BTS server does,
and runs it: Step_Type 1 CC charge, 2 CC discharge, 3 CV charge, 4 rest, 5 cycle (back to
``Start_Step``, ``Cycle_Count`` times), 6 end, 7 CC-CV charge, 19 CV discharge, 20 CC-CV
discharge; ``Limit/Main`` ``Curr`` (mA), ``Volt``/``Stop_Volt`` (0.1 mV), ``Stop_Curr`` (mA),
``Time`` (ms), ``Cap`` (mA s); ``Record/Main/Time`` (ms) per step or in ``Whole_Prt``; the
``Whole_Prt`` voltage protection (``Protect/Main/Volt/Upper``, ``Lower``) puts the channel in
``protect`` when crossed. Unknown step types or a file it cannot read: ``start`` answers
``false``. Replies follow the shapes of the captured BTS 8.0 replies (``donwload_resp`` included).

Faults (:class:`FaultInjector`, per message, ``on`` matched against the message text):
``no_reply``, ``late_reply``, ``garbled``, ``disconnect``, and ``interlock``: the channels the
message addresses go to ``protect`` (a channel that faults); :meth:`NewareSimulator.
fault_channel` does the same directly.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from cellbench.drivers.sim.cell import SimCell
from cellbench.drivers.sim.cycler_channel import SimChannel, SimStep, Ticker
from cellbench.drivers.sim.cycler_server import FramedServer, terminator_framer
from cellbench.drivers.sim.faults import FaultInjector

TERMINATION = b"\n\n#\r\n"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n<bts version="1.0">\r\n'
_STEP_KINDS = {1: "cc", 2: "cc", 3: "cv", 4: "rest", 5: "cycle", 6: "end", 7: "cccv",
               19: "cv", 20: "cccv"}  # fmt: skip
_DISCHARGE_TYPES = {2, 19, 20}


class StepFileError(ValueError):
    """A step file the simulated BTS server cannot run."""


def _main_value(el: ET.Element | None, tag: str) -> float | None:
    if el is None:
        return None
    found = el.find(tag)
    if found is None or found.get("Value") is None:
        return None
    return float(found.get("Value", "0"))


def parse_step_file(path: str | Path) -> tuple[list[SimStep], float, tuple[float, float] | None]:
    """(steps, default record interval s, protect window (V low, V high) or None)."""
    try:
        root = ET.parse(str(path)).getroot()
    except (OSError, ET.ParseError) as exc:
        raise StepFileError(f"cannot read step file {path}: {exc}") from None
    config = root.find("config")
    if config is None or config.get("type") != "Step File":
        raise StepFileError(f'{path}: not a BTS step file (no <config type="Step File">)')
    whole = config.find("Whole_Prt")
    record_s = 10.0
    window = None
    if whole is not None:
        rec = _main_value(whole.find("Record/Main"), "Time")
        if rec:
            record_s = rec / 1000.0
        upper = whole.find("Protect/Main/Volt/Upper")
        lower = whole.find("Protect/Main/Volt/Lower")
        if upper is not None and lower is not None:
            window = (float(lower.get("Value", 0)) / 1e4, float(upper.get("Value", 0)) / 1e4)
    info = config.find("Step_Info")
    if info is None:
        raise StepFileError(f"{path}: no <Step_Info>")
    raw = list(info)
    ids = {int(el.get("Step_ID", 0)): k for k, el in enumerate(raw)}
    steps = []
    for el in raw:
        step_id, code = int(el.get("Step_ID", 0)), int(el.get("Step_Type", 0))
        kind = _STEP_KINDS.get(code)
        if kind is None:
            raise StepFileError(f"{path}: Step{step_id}: Step_Type {code} is not simulated")
        main = el.find("Limit/Main")
        other = el.find("Limit/Other")
        curr = _main_value(main, "Curr")
        sign = -1.0 if code in _DISCHARGE_TYPES else 1.0
        volt = _main_value(main, "Volt")
        time_ms = _main_value(main, "Time")
        stop_v = _main_value(main, "Stop_Volt")
        stop_i = _main_value(main, "Stop_Curr")
        cap = _main_value(main, "Cap")
        record = _main_value(el.find("Record/Main"), "Time")
        step = SimStep(
            kind,
            step_id,
            current_ampere=sign * (curr or 0.0) / 1000.0,
            voltage_volt=volt / 1e4 if volt is not None else None,
            time_second=time_ms / 1000.0 if time_ms is not None else None,
            stop_voltage_volt=stop_v / 1e4 if stop_v is not None else None,
            stop_current_ampere=stop_i / 1000.0 if stop_i is not None else None,
            capacity_ampere_hour=cap / 3.6e6 if cap is not None else None,
            record_second=record / 1000.0 if record else None,
            type_code=code,
        )
        if kind == "cycle":
            start = _main_value(other, "Start_Step")
            count = _main_value(other, "Cycle_Count")
            if start is None or count is None or int(start) not in ids:
                raise StepFileError(f"{path}: Step{step_id}: cycle without a valid Start_Step")
            step.goto, step.count = ids[int(start)], int(count)
        elif kind in ("cc", "cv", "cccv") and not curr:
            raise StepFileError(f"{path}: Step{step_id}: no current (Curr)")
        elif kind in ("cv", "cccv") and volt is None:
            raise StepFileError(f"{path}: Step{step_id}: no voltage (Volt)")
        steps.append(step)
    return steps, record_s, window


class NewareSimulator:
    """Simulated BTS server (``driver = "neware"``)."""

    driver = "neware"

    def __init__(
        self,
        cell: SimCell,
        *,
        name: str = "neware",
        faults: FaultInjector | None = None,
        devtype: int = 27,
        devid: int = 21,
        subdevices: int = 2,
        channels_per_subdevice: int = 8,
        cell_channel: str = "21-1-1",
        host: str = "127.0.0.1",
        tick_s: float = 1e-3,
    ):
        self.name = name
        self.cell = cell
        self.faults = faults if faults is not None else FaultInjector()
        self.host = host
        self.devtype, self.devid = int(devtype), int(devid)
        self.lock = threading.RLock()
        self.channels: dict[str, SimChannel] = {}
        for sub in range(1, int(subdevices) + 1):
            for chl in range(1, int(channels_per_subdevice) + 1):
                key = f"{self.devid}-{sub}-{chl}"
                own = key == cell_channel
                sim_cell = (
                    cell if own else SimCell(cell.params, clock=cell.clock, seed=sub * 100 + chl)
                )
                self.channels[key] = SimChannel(len(self.channels), sim_cell)
        if cell_channel not in self.channels:
            raise ValueError(f"cell_channel {cell_channel!r} is not one of {list(self.channels)}")
        self.windows: dict[str, tuple[float, float] | None] = {}
        self.started_files: list[str] = []
        self.commands: list[str] = []
        self._server = FramedServer(
            terminator_framer(TERMINATION), self._on_message, name=name, faults=self.faults,
            host=host,
        )  # fmt: skip
        self._ticker = Ticker(list(self.channels.values()), self.lock, tick_s)

    @property
    def address(self) -> str:
        return f"TCPIP::{self.host}::{self._server.port}::SOCKET"

    def start(self) -> NewareSimulator:
        self._server.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        self._server.stop()

    def __enter__(self) -> NewareSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault_channel(self, pipeline: str, reason: str = "hardware protection") -> None:
        with self.lock:
            channel = self.channels[pipeline]
            channel.tick()
            channel.stop("faulted", reason)

    def truth(self, pipeline: str) -> list[dict[str, Any]]:
        with self.lock:
            return [vars(t).copy() for t in self.channels[pipeline].truth]

    # -- messages -----------------------------------------------------------------------------
    def _on_message(self, raw: bytes) -> bytes:
        text = raw.decode("utf-8", errors="replace")
        try:
            root = ET.fromstring(text.strip())
            cmd = (root.findtext("cmd") or "").strip()
        except ET.ParseError:
            cmd, root = "", None
        with self.lock:
            self.commands.append(cmd)
            if root is not None and self.faults.take("interlock", text) is not None:
                for key in self._targets(root):
                    if key in self.channels:
                        self.channels[key].tick()
                        self.channels[key].stop("faulted", "injected protection")
            for channel in self.channels.values():
                channel.tick()
            handler = getattr(self, f"_cmd_{cmd.lower()}", None)
            body = handler(root) if handler is not None and root is not None else (
                f"  <cmd>{escape(cmd or 'unknown')}_resp</cmd>\r\n  <result>false</result>\r\n"
            )  # fmt: skip
        return (_HEAD + body + "</bts>").encode("utf-8") + TERMINATION

    def _targets(self, root: ET.Element) -> list[str]:
        out = []
        for el in root.iter():
            if el.get("devid") is not None and el.get("chlid") is not None:
                out.append(f"{el.get('devid')}-{el.get('subdevid')}-{el.get('chlid')}")
        return out

    def _attrs(self, key: str, ip: bool = True) -> str:
        dev, sub, chl = key.split("-")
        head = 'ip="127.0.0.1" ' if ip else ""
        return f'{head}devtype="{self.devtype}" devid="{dev}" subdevid="{sub}" chlid="{chl}"'

    @staticmethod
    def _workstatus(ch: SimChannel) -> str:
        return {"direct": "working", "schedule": "working", "finished": "finish",
                "stopped": "stop", "faulted": "protect", "idle": "finish"}[ch.state]  # fmt: skip

    def _per_channel(self, root: ET.Element, cmd: str, each) -> str:
        listing = root.find("list")
        items = [el for el in (listing if listing is not None else []) if el.tag != "backup"]
        lines = []
        for el in items:
            key = f"{el.get('devid')}-{el.get('subdevid')}-{el.get('chlid')}"
            ch = self.channels.get(key)
            lines.append("    " + each(key, ch, el))
        return (
            f'  <cmd>{cmd}_resp</cmd>\r\n  <list count="{len(lines)}">\r\n'
            + "".join(line + "\r\n" for line in lines)
            + "  </list>\r\n"
        )

    def _cmd_connect(self, root: ET.Element) -> str:
        ok = root.findtext("username") == "admin" and root.findtext("password") == "neware"
        return f"  <cmd>connect_resp</cmd>\r\n  <result>{'ok' if ok else 'false'}</result>\r\n"

    def _cmd_getdevinfo(self, root: ET.Element) -> str:
        rows = []
        for key in self.channels:
            dev, sub, chl = key.split("-")
            rows.append(
                f'    <channel ip="127.0.0.1" devtype="{self.devtype}" devid="{dev}" '
                f'subdevid="{sub}" Channelid="{chl}">true</channel>\r\n'
            )
        return (
            '  <cmd>getdevinfo_resp</cmd>\r\n  <serverip count="1">\r\n'
            '    <server ip="127.0.0.1" port="3306" />\r\n  </serverip>\r\n'
            f'  <middle count="{len(rows)}">\r\n' + "".join(rows) + "</middle>\r\n"
        )

    def _cmd_getchlstatus(self, root: ET.Element) -> str:
        def each(key: str, ch: SimChannel | None, el: ET.Element) -> str:
            state = self._workstatus(ch) if ch else "false"
            return f'<status {self._attrs(key)} reservepause="1">{state}</status>'

        return self._per_channel(root, "getchlstatus", each)

    def _cmd_inquire(self, root: ET.Element) -> str:
        def each(key: str, ch: SimChannel | None, el: ET.Element) -> str:
            if ch is None:
                return f'<inquire dev={quoteattr(key)} workstatus="false" />'
            v, i = ch.cell.measure()
            running = ch.state in ("schedule", "direct")
            now = ch.now()
            step = f'step_id="{ch._step_id()}" ' if running else ""
            kind = self._step_type(ch, i) if running else "--"
            return (
                f'<inquire dev="{self.devtype}-{key}-0" cycle_id="{ch.cycle}" {step}'
                f'step_type="{kind}" workstatus="{self._workstatus(ch)}" '
                f'barcode={quoteattr(ch.barcode)} current="{i:.6g}" voltage="{v:.6g}" '
                f'capacity="{ch.step_capacity_ah:.6g}" energy="{ch.step_energy_wh:.6g}" '
                f'totaltime="{(now - ch.test_start) if running else 0:.1f}" '
                f'relativetime="{(now - ch.step_start) if running else 0:.1f}" '
                f'open_or_close="0" log_code="{102000 if running else 0}" />'
            )

        return self._per_channel(root, "inquire", each)

    def _step_type(self, ch: SimChannel, current: float) -> str:
        kind = ch._kind()
        if kind == "cccv":
            kind = "cv" if ch.cell.mode == "voltage" or ch.cell.in_compliance else "cc"
        if kind == "cc" and current < 0:
            return "dc"
        return kind

    def _cmd_inquiredf(self, root: ET.Element) -> str:
        def each(key: str, ch: SimChannel | None, el: ET.Element) -> str:
            if ch is None:
                return f'<chl {self._attrs(key, ip=False)} testid="0" count="0">false</chl>'
            running = "true" if ch.state in ("schedule", "direct") else "false"
            return (
                f'<chl {self._attrs(key, ip=False)} testid="{ch.test_id}" '
                f'count="{len(ch.records)}">{running}</chl>'
            )

        return self._per_channel(root, "inquiredf", each)

    def _cmd_start(self, root: ET.Element) -> str:
        def each(key: str, ch: SimChannel | None, el: ET.Element) -> str:
            ok = "false"
            if ch is not None and self._workstatus(ch) in ("finish", "stop", "protect"):
                path = (el.text or "").strip()
                try:
                    steps, record_s, window = parse_step_file(path)
                except StepFileError:
                    steps = []
                if steps:
                    ch.barcode = el.get("barcode", "")
                    ch.limits = (
                        {"vmin": window[0], "vmax": window[1], "ichg": 1e9, "idis": 1e9}
                        if window
                        else None
                    )
                    ch.start_schedule(steps, record_s)
                    self.started_files.append(path)
                    ok = "ok"
            return f"<start {self._attrs(key)}>{ok}</start>"

        return self._per_channel(root, "start", each)

    def _cmd_stop(self, root: ET.Element) -> str:
        def each(key: str, ch: SimChannel | None, el: ET.Element) -> str:
            if ch is None:
                return f"<stop {self._attrs(key)}>false</stop>"
            if ch.state in ("schedule", "direct"):
                ch.stop("stopped")
            return f"<stop {self._attrs(key)}>ok</stop>"

        return self._per_channel(root, "stop", each)

    def _cmd_light(self, root: ET.Element) -> str:
        return self._per_channel(
            root,
            "light",
            lambda key, ch, el: f"<light {self._attrs(key)}>{'ok' if ch else 'false'}</light>",
        )

    def _cmd_clearflag(self, root: ET.Element) -> str:
        def each(key: str, ch: SimChannel | None, el: ET.Element) -> str:
            cleared = ch is not None and ch.state == "faulted"
            if cleared:
                ch.state, ch.fault_reason = "stopped", ""
            return f"<clearflag {self._attrs(key)}>{'ok' if cleared else 'false'}</clearflag>"

        return self._per_channel(root, "clearflag", each)

    def _download_el(self, root: ET.Element) -> tuple[str, SimChannel | None, ET.Element]:
        el = root.find("download")
        if el is None:
            el = ET.Element("download")
        key = f"{el.get('devid')}-{el.get('subdevid')}-{el.get('chlid')}"
        return key, self.channels.get(key), el

    def _cmd_download(self, root: ET.Element) -> str:
        key, ch, el = self._download_el(root)
        start, count = int(el.get("startpos", 1)), int(el.get("count", 0))
        records = ch.records if ch is not None else []
        chosen = records[max(start, 1) - 1 : max(start, 1) - 1 + count] if count > 0 else []
        rows = "".join(
            f'    <data seqid="{r.seq}" stepid="{r.step_id}" cycleid="{r.cycle}" '
            f'steptype="{"dc" if r.kind == "cc" and r.current_ampere < 0 else r.kind}" '
            f'testtime="{round(r.test_time_second * 1000)}" '
            f'atime="{datetime.fromtimestamp(r.unix_time_second):%Y-%m-%d %H:%M:%S}" '
            f'volt="{r.voltage_volt!r}" curr="{r.current_ampere!r}" '
            f'cap="{r.step_capacity_ampere_hour!r}" eng="{r.step_energy_watt_hour!r}" />\r\n'
            for r in chosen
        )
        test_id = ch.test_id if ch is not None else 0
        head = (
            f"  <cmd>donwload_resp</cmd>\r\n  <download {self._attrs(key, ip=False)} "
            f'testid="{test_id}" startpos="{start}" count="{count}" auxid="0" />\r\n'
        )
        if not chosen:
            return head + '  <list count="0" />\r\n'
        return head + f'  <list count="{len(chosen)}">\r\n{rows}  </list>\r\n'

    def _cmd_downloadlog(self, root: ET.Element) -> str:
        key, ch, _ = self._download_el(root)
        entries = []
        if ch is not None and ch.test_id:
            entries.append('    <data seqid="1" log_code="100000" atime="{}" />\r\n'.format(
                datetime.now().strftime("%Y-%m-%d %H:%M:%S")))  # fmt: skip
            if ch.state in ("finished", "stopped", "faulted"):
                code = {"finished": 100001, "stopped": 100007, "faulted": 100215}[ch.state]
                entries.append(
                    f'    <data seqid="{len(ch.records)}" log_code="{code}" '
                    f'atime="{datetime.now():%Y-%m-%d %H:%M:%S}" />\r\n'
                )
        test_id = ch.test_id if ch is not None else 0
        return (
            f"  <cmd>donwloadlog_resp</cmd>\r\n  <download {self._attrs(key, ip=False)} "
            f'testid="{test_id}" log_lever="0" />\r\n  <list count="{len(entries)}">\r\n'
            + "".join(entries)
            + "  </list>\r\n"
        )
