"""Neware BTS 8.x channels through the BTS server's API: XML over TCP (port 502 by default).

A :class:`NewareChannel` is one channel, addressed as device-subdevice-channel (``21-1-3``: device
21, sub-device 1, channel 3, as BTS Client shows them). A BTS channel runs a step file on its own
(the server reads the file's path from disk), so cellbench runs a protocol on it by translating
the protocol to a BTS step file (:mod:`cellbench.daq.neware_steps`), starting it, and logging the
channel's records live; with ``control = "monitor"`` it only records a channel running a schedule
started in BTS Client (harvest).

Messages (shapes as ``aurora-neware``'s ``NewareAPI`` sends them and as the replies it was
tested with, captured from a BTS 8.0 server): every message is
``<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">`` + body + ``</bts>`` followed by
``\\n\\n#\\r\\n``, and so is every reply (``<cmd>NAME_resp</cmd>`` ...).

==============  =================================================================================
connect         ``<username>``/``<password>``/``<type>bfgs</type>`` -> ``<result>ok</result>``
getdevinfo      ``<middle>`` of ``<channel ip devtype devid subdevid Channelid>``
getchlstatus    per channel ``<status ...>`` ``working``/``finish``/``stop``/``protect``/``pause``
inquire         per channel: ``cycle_id step_id step_type workstatus current`` (A) ``voltage`` (V)
                ``capacity`` (Ah) ``energy`` (Wh) ``totaltime relativetime`` (s)
inquiredf       per channel: ``testid`` and record ``count``
start           per channel ``<start ... barcode>PATH</start>`` (the server reads the step file
                at PATH) + ``<backup .../>`` -> ``ok`` / ``false``
stop            per channel ``<stop ...>true</stop>`` -> ``ok``
download        ``startpos``/``count`` -> ``<data seqid stepid cycleid steptype testtime`` (ms)
                ``volt curr cap eng atime>``
downloadlog     the test's log codes
light           channel indicator light on/off
clearflag       clear a channel's alarm flag
==============  =================================================================================

Not settled by the replies read (handled either way): whether a record's ``testtime`` counts
from the test's start or the step's (the driver keeps time increasing across steps), and the
``workstatus`` of a channel that never ran a test (any state but ``working``/``pause`` lets it
start, as ``NewareAPI`` allows ``finish``, ``stop`` and ``protect``).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from cellbench.drivers.errors import (
    ArgumentRangeError,
    InstrumentCommandError,
    InstrumentConnectionError,
    InstrumentReplyError,
    InterlockError,
)
from cellbench.drivers.roles import CyclerPoll, CyclerRecord, Reading
from cellbench.drivers.socket_transport import SocketTransport
from cellbench.drivers.transport import Transport, _socket_endpoint

PORT = 502
TERMINATION = "\n\n#\r\n"
HEADER = '<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
FOOTER = "</bts>"
#: workstatus values after which a channel may start a new test (NewareAPI's rule)
STARTABLE = ("finish", "stop", "protect")
RUNNING = ("working", "pause")
#: records per download request (NewareAPI downloads in chunks of 1000)
DOWNLOAD_CHUNK = 1000


def parse_pipeline(text: str) -> tuple[int, int, int]:
    """``"21-1-3"`` -> (device, sub-device, channel)."""
    parts = str(text).strip().split("-")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(
            f"a Neware channel is device-subdevice-channel, e.g. '21-1-3'; got {text!r}"
        )
    return values  # type: ignore[return-value]


class NewareChannel:
    """One Neware BTS channel (``driver = "neware"``).

    Args:
        address: the BTS server, ``TCPIP::host::502::SOCKET``.
        pipeline: ``"device-subdevice-channel"`` as BTS Client shows it (e.g. ``"21-1-3"``).
        control: ``"schedule"`` (cellbench starts translated step files) or ``"monitor"``.
        username / password: the API login (BTS defaults ``admin`` / ``neware``).
        barcode: the barcode given to tests this driver starts (default: the station name).
        backup_dir: where the BTS server keeps its backup copies of the data.
    """

    model = "Neware BTS channel"
    runs_own_schedule = True
    read_termination = TERMINATION
    write_termination = TERMINATION

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout_s: float = 5.0,
        transport: Transport | None = None,
        pipeline: str = "",
        control: str = "schedule",
        username: str = "admin",
        password: str = "neware",
        barcode: str = "",
        backup_dir: str = "C:\\Neware data\\",
    ):
        self.name = name or f"neware-{pipeline}"
        self.address = address
        self.timeout_s = float(timeout_s)
        if control not in ("schedule", "monitor"):
            raise ArgumentRangeError(
                f'control must be "schedule" or "monitor", got {control!r}',
                instrument=self.name,
                address=address,
            )
        try:
            self.device, self.subdevice, self.chl = parse_pipeline(pipeline)
        except ValueError as exc:
            raise ArgumentRangeError(str(exc), instrument=self.name, address=address) from None
        self.pipeline = f"{self.device}-{self.subdevice}-{self.chl}"
        self.control = control
        self.username, self.password = username, password
        self.barcode = barcode or self.name
        self.backup_dir = backup_dir
        self.channel_info: dict[str, str] = {}
        self._started = False  # a test this driver started is (or was) running
        self._start_sent = ""  # the step file of a start sent whose reply was not read
        self._next_seq = 1  # next record to download
        self._time_base = 0.0  # for testtime that restarts with each step
        self._last_record: tuple[int, int, float] | None = None  # (cycle, step, raw time s)
        if transport is None:
            if _socket_endpoint(address) is None:
                raise InstrumentConnectionError(
                    "a BTS server address is TCPIP::host::502::SOCKET", address=address
                )
            transport = SocketTransport(
                address,
                name=self.name,
                timeout_s=self.timeout_s,
                read_termination=TERMINATION,
                write_termination=TERMINATION,
                encoding="utf-8",
            )
            transport.open()
        self.transport = transport
        self._login()

    # -- wire ---------------------------------------------------------------------------------
    def command(self, body: str, *, expect: str, retry: bool = True) -> ET.Element:
        """Send ``body`` inside the ``<bts>`` envelope; the parsed reply (its ``<cmd>`` must be
        ``expect + "_resp"``; BTS 8.0 spells download replies ``donwload_resp``).

        After a lost connection it reconnects, logs in again and (``retry``) sends again; a
        start is not resent (the first may have started the test)."""
        name = expect

        def once() -> str:
            return self.transport.query(HEADER + body + FOOTER)

        try:
            text = once()
        except InstrumentConnectionError:
            self.transport.reconnect()
            self._login()
            if not retry:
                raise
            text = once()
        try:
            root = ET.fromstring(text.strip())
        except ET.ParseError as exc:
            raise InstrumentReplyError(
                f"reply is not XML ({exc}): {text[:80]!r}",
                instrument=self.name,
                address=self.address,
                command=name,
            ) from None
        cmd = (root.findtext("cmd") or "").strip().lower()
        wanted = {
            f"{expect}_resp".lower(),
            f"{expect}_resp".lower().replace("download", "donwload"),
        }
        if cmd not in wanted:
            raise InstrumentReplyError(
                f"reply is {cmd or 'no command'!r}, not {expect}_resp",
                instrument=self.name,
                address=self.address,
                command=name,
            )
        return root

    def _login(self) -> None:
        root = self.command(
            f"<cmd>connect</cmd><username>{self.username}</username>"
            f"<password>{self.password}</password><type>bfgs</type>",
            expect="connect",
        )
        if (root.findtext("result") or "").strip().lower() != "ok":
            raise InstrumentCommandError(
                "the BTS server refused the API login (user name / password)",
                instrument=self.name,
                address=self.address,
                command="connect",
            )

    def _attrs(self) -> str:
        info = self.channel_info or self._find_channel()
        return (
            f"ip={quoteattr(info['ip'])} devtype={quoteattr(info['devtype'])} "
            f'devid="{self.device}" subdevid="{self.subdevice}" chlid="{self.chl}"'
        )

    def _one(self, root: ET.Element, command: str) -> ET.Element:
        items = list(root.find("list") if root.find("list") is not None else [])
        if len(items) != 1:
            raise InstrumentReplyError(
                f"expected one channel in the reply, got {len(items)}",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        return items[0]

    # -- API commands ---------------------------------------------------------------------------
    def device_info(self) -> dict[str, dict[str, str]]:
        """getdevinfo: every channel the server knows, by ``device-subdevice-channel``."""
        root = self.command("<cmd>getdevinfo</cmd>", expect="getdevinfo")
        middle = root.find("middle")
        out = {}
        for el in list(middle) if middle is not None else []:
            a = dict(el.attrib)
            out[f"{a.get('devid')}-{a.get('subdevid')}-{a.get('Channelid')}"] = a
        return out

    def _find_channel(self) -> dict[str, str]:
        channels = self.device_info()
        if self.pipeline not in channels:
            known = ", ".join(sorted(channels)[:12]) or "none"
            raise InstrumentCommandError(
                f"the BTS server has no channel {self.pipeline} (device-subdevice-channel); "
                f"it has: {known}",
                instrument=self.name,
                address=self.address,
                command="getdevinfo",
            )
        self.channel_info = channels[self.pipeline]
        return self.channel_info

    def channel_status(self) -> str:
        """getchlstatus: ``working``, ``finish``, ``stop``, ``protect``, ``pause`` ..."""
        root = self.command(
            f'<cmd>getchlstatus</cmd><list count = "1"><status {self._attrs()}>true</status>'
            "</list>",
            expect="getchlstatus",
        )
        return (self._one(root, "getchlstatus").text or "").strip()

    def inquire(self) -> dict[str, Any]:
        """inquire: the channel's latest values (numbers converted; ``--`` is None)."""
        root = self.command(
            f'<cmd>inquire</cmd><list count = "1"><inquire {self._attrs()} aux="0" '
            'barcode="1">true</inquire></list>',
            expect="inquire",
        )
        return {k: _value(v) for k, v in self._one(root, "inquire").attrib.items()}

    def test_info(self) -> tuple[int, int]:
        """inquiredf: (test id, records stored) of the channel's latest test."""
        root = self.command(
            f'<cmd>inquiredf</cmd><list count = "1"><chl devtype={quoteattr(self._devtype())} '
            f'devid="{self.device}" subdevid="{self.subdevice}" chlid="{self.chl}" testid="0" />'
            "</list>",
            expect="inquiredf",
        )
        el = self._one(root, "inquiredf")
        try:
            return int(el.get("testid", 0)), int(el.get("count", 0))
        except ValueError:
            raise InstrumentReplyError(
                f"inquiredf reply without numbers: {el.attrib}",
                instrument=self.name,
                address=self.address,
                command="inquiredf",
            ) from None

    def download(self, start: int, count: int = DOWNLOAD_CHUNK) -> list[dict[str, Any]]:
        """download: records ``start`` .. ``start + count - 1`` (from 1) of the latest test."""
        root = self.command(
            f"<cmd>download</cmd><download devtype={quoteattr(self._devtype())} "
            f'devid="{self.device}" subdevid="{self.subdevice}" chlid="{self.chl}" auxid="0" '
            f'testid="0" startpos="{int(start)}" count="{int(count)}"/>',
            expect="download",
        )
        listing = root.find("list")
        return [
            {k: _value(v) for k, v in el.attrib.items()}
            for el in (list(listing) if listing is not None else [])
        ]

    def download_log(self) -> list[dict[str, Any]]:
        """downloadlog: the latest test's log codes."""
        root = self.command(
            f"<cmd>downloadlog</cmd><download devtype={quoteattr(self._devtype())} "
            f'devid="{self.device}" subdevid="{self.subdevice}" chlid="{self.chl}" testid="0"/>',
            expect="downloadlog",
        )
        listing = root.find("list")
        return [dict(el.attrib) for el in (list(listing) if listing is not None else [])]

    def start_schedule(self, step_file: str | Path) -> None:
        """start: run the BTS step file at ``step_file`` (a path the BTS server can read)."""
        self._require_control("start a test")
        state = self.channel_status()
        if state in RUNNING and self._start_sent == str(step_file):
            # our start reached the server but its reply was lost with the connection
            self._start_sent, self._started = "", True
            self._next_seq, self._time_base, self._last_record = 1, 0.0, None
            return
        if state not in STARTABLE:
            raise InstrumentCommandError(
                f"channel {self.pipeline} is {state!r}; BTS starts only channels that read "
                f"{', '.join(STARTABLE)}",
                instrument=self.name,
                address=self.address,
                command="start",
            )
        info = self.channel_info or self._find_channel()
        path = str(step_file)
        self._start_sent = path
        root = self.command(
            f'<cmd>start</cmd><list count = "1"><start ip={quoteattr(info["ip"])} '
            f'devtype={quoteattr(info["devtype"])} devid="{self.device}" '
            f'subdevid="{self.subdevice}" chlid="{self.chl}" barcode={quoteattr(self.barcode)}>'
            f"{_text(path)}</start>"
            f'<backup backupdir={quoteattr(self.backup_dir)} remotedir="" filenametype="0" '
            'customfilename="" addtimewhenrepeat="0" createdirbydate="0" filetype="0" '
            'backupontime="1" backupontimeinterval="720" backupfree="1" /></list>',
            expect="start",
            retry=False,
        )
        self._start_sent = ""
        if (self._one(root, "start").text or "").strip().lower() != "ok":
            raise InstrumentCommandError(
                f"the BTS server did not start channel {self.pipeline} with {path} (is the file "
                "readable by the BTS server, and the step file valid?)",
                instrument=self.name,
                address=self.address,
                command="start",
            )
        self._started = True
        self._next_seq = 1  # the new test's records, from its first
        self._time_base, self._last_record = 0.0, None

    def stop(self) -> None:
        """stop: end the channel's test."""
        self._require_control("stop the channel")
        root = self.command(
            f'<cmd>stop</cmd><list count = "1"><stop {self._attrs()}>true</stop></list>',
            expect="stop",
        )
        if (self._one(root, "stop").text or "").strip().lower() != "ok":
            raise InstrumentCommandError(
                f"the BTS server did not stop channel {self.pipeline}",
                instrument=self.name,
                address=self.address,
                command="stop",
            )

    def light(self, on: bool = True) -> bool:
        """light: the channel's indicator (to find the cell on the rack)."""
        root = self.command(
            f'<cmd>light</cmd><list count = "1"><light {self._attrs()}>'
            f"{'true' if on else 'false'}</light></list>",
            expect="light",
        )
        return (self._one(root, "light").text or "").strip().lower() == "ok"

    def clear_flag(self) -> bool:
        """clearflag: clear the channel's alarm flag."""
        root = self.command(
            f'<cmd>clearflag</cmd><list count = "1"><clearflag {self._attrs()}>true</clearflag>'
            "</list>",
            expect="clearflag",
        )
        return (self._one(root, "clearflag").text or "").strip().lower() == "ok"

    # -- the schedule-running channel (cellbench.daq.cycler_runs) --------------------------------
    def attach(self) -> None:
        """Monitor from now on: later polls return the records stored after this call."""
        _, count = self.test_info()
        self._next_seq = count + 1
        self._time_base, self._last_record = 0.0, None

    def poll(self) -> CyclerPoll:
        """The channel's state and the records stored since the last poll."""
        state = self.channel_status()
        records: list[CyclerRecord] = []
        while True:
            chunk = self.download(self._next_seq, DOWNLOAD_CHUNK)
            for raw in chunk:
                records.append(self._record(raw))
            self._next_seq += len(chunk)
            if len(chunk) < DOWNLOAD_CHUNK:
                break
        mapped = {
            "working": "running",
            "pause": "running",
            "finish": "finished",
            "stop": "stopped",
            "protect": "faulted",
        }.get(state, "idle")
        return CyclerPoll(mapped, records, state)

    def _record(self, raw: dict[str, Any]) -> CyclerRecord:
        try:
            cycle, step = int(raw["cycleid"]), int(raw["stepid"])
            t = float(raw["testtime"]) / 1000.0
            rec_v, rec_i = float(raw["volt"]), float(raw["curr"])
        except (KeyError, TypeError, ValueError):
            raise InstrumentReplyError(
                f"download record lacks numbers: {raw}",
                instrument=self.name,
                address=self.address,
                command="download",
            ) from None
        last = self._last_record
        if last is not None and (cycle, step) != last[:2] and t < last[2]:
            self._time_base += last[2]  # testtime restarted with the step
        self._last_record = (cycle, step, t)
        return CyclerRecord(
            self._time_base + t, rec_v, rec_i, cycle, step, str(raw.get("steptype", ""))
        )

    # -- the source role ------------------------------------------------------------------------
    def identify(self) -> str:
        info = self._find_channel()
        return f"Neware BTS channel {self.pipeline} (devtype {info.get('devtype', '?')})"

    def measure(self) -> Reading:
        values = self.inquire()
        if values.get("workstatus") == "protect":
            raise InterlockError(
                f"channel {self.pipeline} is in protection (log code {values.get('log_code')})",
                instrument=self.name,
                address=self.address,
                command="inquire",
            )
        v, i = values.get("voltage"), values.get("current")
        if (
            not isinstance(v, int | float)
            or not isinstance(i, int | float)
            or not (math.isfinite(v) and math.isfinite(i))
        ):
            raise InstrumentReplyError(
                f"inquire reply without voltage/current: {values}",
                instrument=self.name,
                address=self.address,
                command="inquire",
            )
        t = values.get("totaltime")
        return Reading(float(v), float(i), float(t) if isinstance(t, int | float) else None)

    def output_off(self) -> None:
        """Stop a test this driver started (the channel then rests at open circuit)."""
        if self.control == "schedule" and self._started:
            if self.channel_status() in RUNNING:
                self.stop()
            self._started = False

    def safe_state(self) -> None:
        """Stop the test this driver started; a monitored channel is left to its schedule."""
        if self.control == "schedule" and self._started and self.channel_status() in RUNNING:
            self.stop()

    def close(self) -> None:
        self.transport.close()

    def reconnect(self) -> None:
        self.transport.reconnect()
        self._login()

    # -- helpers --------------------------------------------------------------------------------
    def _devtype(self) -> str:
        return (self.channel_info or self._find_channel())["devtype"]

    def _require_control(self, what: str) -> None:
        if self.control != "schedule":
            raise InstrumentCommandError(
                f'channel {self.pipeline} is monitored only (control = "monitor"): cannot {what}',
                instrument=self.name,
                address=self.address,
                command=what,
            )

    def __repr__(self) -> str:
        return f"NewareChannel({self.address!r}, pipeline={self.pipeline!r}, name={self.name!r})"


def _value(text: str) -> Any:
    """An attribute as int, float or text; ``--`` (no value) is None (as NewareAPI reads it)."""
    if text == "--":
        return None
    try:
        return float(text) if "." in text or "e" in text.lower() else int(text)
    except ValueError:
        return text


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
