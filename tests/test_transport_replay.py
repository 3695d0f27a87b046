"""The replay transport (scripted byte pairs) and the one-command settings declared with
``line_property`` / ``scpi_property``, exercised byte for byte without threads or sockets."""

from __future__ import annotations

import threading
import time

import pytest

from cellbench.drivers.errors import ArgumentRangeError, InstrumentReplyError, InstrumentTimeout
from cellbench.drivers.line_driver import LineDriver, line_property
from cellbench.drivers.replay import ReplayMismatch, ReplayTransport, replay
from cellbench.drivers.scpi_driver import ScpiDriver, scpi_property


class Meter(ScpiDriver):
    """A made-up SCPI instrument with one setting of each kind."""

    model = "meter"
    nplc = scpi_property(":NPLC?", ":NPLC {}", name="integration time", check=(0.01, 10, "PLC"))
    speed = scpi_property(
        ":SPE?", ":SPE {}", name="speed", values=("FAST", "MED", "SLOW"), to_wire=str, parse=str
    )
    output = scpi_property(":OUTP?", ":OUTP {}", name="output", mapping={True: "ON", False: "OFF"})
    aperture = scpi_property(
        ":APER?", ":APER {}", name="aperture", values=(1, 2, 5), to_wire=lambda v: str(int(v)),
        parse=lambda s: int(float(s)),
    )  # fmt: skip
    label = scpi_property(":LAB?", name="label", parse=str)


class Acknowledging(LineDriver):
    """A line instrument that answers every setting with ``OK``."""

    model = "ack"
    read_termination = "\r\n"
    write_termination = "\r\n"
    level = line_property(None, "LEV {}", name="level", check=(0, 5, "V"), send="_set")

    def _set(self, command: str) -> None:
        reply = self._query(command)
        if reply != "OK":
            raise self._reply_error(f"expected OK, got {reply!r}", command)

    def safe_state(self) -> None:
        pass


def test_a_scripted_conversation_runs_without_threads_or_sockets():
    threads = threading.active_count()
    pairs = [
        (b":NPLC 0.5\n", None),
        (b":NPLC?\n", b"+5.000000E-01\n"),
        (b":SPE SLOW\n", None),
        (b":OUTP ON\n", None),
        (b":OUTP?\n", b"+1\n"),  # a boolean mapping accepts 1/0 (and signed +1) too
        (b":APER 5\n", None),
        (b":APER?\n", b"+5\n"),
    ]
    with replay(Meter, pairs) as meter:
        meter.nplc = 0.5
        assert meter.nplc == 0.5
        meter.speed = "slow"  # case-insensitive; the set's member is sent
        meter.output = True
        assert meter.output is True
        meter.aperture = 5.0
        assert meter.aperture == 5
    assert threading.active_count() == threads


def test_validators_refuse_before_the_wire_and_name_the_setting():
    with replay(Meter, []) as meter:
        with pytest.raises(ArgumentRangeError, match=r"integration time 20 PLC is outside 0\.01"):
            meter.nplc = 20
        with pytest.raises(ArgumentRangeError, match=r"speed 'TURBO' is not one of FAST, MED"):
            meter.speed = "TURBO"
        with pytest.raises(ArgumentRangeError, match=r"output 'yes' is not one of True, False"):
            meter.output = "yes"
        with pytest.raises(ArgumentRangeError, match="aperture 3 is not one of 1, 2, 5"):
            meter.aperture = 3
        with pytest.raises(AttributeError):
            meter.label = "read-only"
    assert Meter.nplc.__doc__ == "integration time"  # the name, not parsed from a docstring


def test_a_reply_outside_the_mapping_is_a_reply_error():
    expected = pytest.raises(InstrumentReplyError, match="'MAYBE' is none of ON, OFF")
    with replay(Meter, [(b":OUTP?\n", b"MAYBE\n")]) as meter, expected:
        _ = meter.output


def test_a_setting_with_an_acknowledging_sender():
    with replay(Acknowledging, [(b"LEV 2.5\r\n", b"OK\r\n")]) as inst:
        inst.level = 2.5
    expected = pytest.raises(InstrumentReplyError, match="expected OK")
    with replay(Acknowledging, [(b"LEV 1\r\n", b"NA\r\n")]) as inst, expected:
        inst.level = 1


def test_an_unexpected_write_fails_at_once_naming_both():
    with replay(Meter, [(b":NPLC 1\n", None)]) as meter:
        with pytest.raises(
            ReplayMismatch, match=r"write #1: expected b':NPLC 1\\n', driver sent b':NPLC 2\\n'"
        ):
            meter.nplc = 2
        meter.nplc = 1


def test_a_write_past_the_end_of_the_script_fails():
    with replay(Meter, []) as meter, pytest.raises(ReplayMismatch, match="unexpected write #1"):
        meter.output = False


def test_leftover_pairs_fail_at_exit():
    expected = pytest.raises(ReplayMismatch, match=r"1 scripted write\(s\) never sent: b':OUTP\?")
    with expected, replay(Meter, [(b":OUTP?\n", b"0\n")]):
        pass


def test_unread_reply_bytes_fail_at_exit():
    transport = ReplayTransport([(b"*IDN?\n", b"A\nB\n")]).open()
    transport.write("*IDN?")
    assert transport.read() == "A"
    with pytest.raises(ReplayMismatch, match="never read: b'B\\\\n'"):
        transport.verify()


def test_a_read_with_nothing_scripted_is_an_immediate_timeout():
    transport = ReplayTransport([(b"Z\n", None)]).open()
    transport.write("Z")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="no scripted reply"):
        transport.read()
    assert time.monotonic() - t0 < 0.05
    transport.verify()


def test_exact_byte_reads_and_multi_line_replies():
    transport = ReplayTransport(
        [(b"t\n", b"tes4_hr 1.3\nR2024*\n"), (b":DATA?\n", b"#14abcd\n")]
    ).open()
    transport.write("t")
    assert [transport.read(), transport.read()] == ["tes4_hr 1.3", "R2024*"]
    transport.write(":DATA?")
    assert transport.read_raw(2) == b"#1"
    assert transport.read_raw(5) == b"4abcd"
    assert transport.read_raw() == b"\n"
    transport.verify()
