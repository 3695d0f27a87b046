"""The control channel of a running logger: pause where safe and continue (engine), stop / pause /
continue / status from the command line against a real `cellbench run` process, and who may
connect (a 0700 folder of this user, 0600 sockets, the peer's uid checked on every connection)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from cellbench.cli.main import main
from cellbench.daq import control
from cellbench.daq.run_reader import load_meta, open_run
from cellbench.daq.session import prepare

FX = Path(__file__).resolve().parents[1] / "fixtures"
NOBODY = 65534


@pytest.fixture
def ctl_dir(monkeypatch):
    """A private control folder for this test (short: socket paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="cbctl-"))
    monkeypatch.setenv("CELLBENCH_CONTROL_DIR", str(folder / "c"))
    yield folder / "c"
    shutil.rmtree(folder, ignore_errors=True)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def station(tmp_path: Path) -> Path:
    """The demo station (Keithley 2450, IM3590, chamber; simulated) beside the test's files."""
    text = (FX / "stations" / "demo_station.toml").read_text(encoding="utf-8")
    return write(tmp_path, "st.toml", text.replace('cell = "../sim/', f'cell = "{FX / "sim"}/'))


PROTOCOL = """
name = "pause test"
sample_interval = "10 s"
[safety]
voltage_min = "2.5 V"
voltage_max = "4.35 V"
current_max = "5 mA"
[[step]]
type = "rest"
duration = "2 h"
[[step]]
type = "cc"
current = "0.5 mA"
until = { time = "20 min", voltage_above = "4.2 V" }
[[step]]
type = "rest"
duration = "5 min"
"""


def wait_for(predicate, timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def actions(run_path: Path, channel: str = "cell1") -> list[dict]:
    ev = open_run(run_path).read("events").filter(pl.col("kind") == "status")
    out = []
    for row in ev.iter_rows(named=True):
        data = json.loads(row["data"]) if row["data"] else {}
        if "action" in data:
            out.append({**data, "message": row["message"], "t": row["test_time_second"]})
    return out


# ------------------------------------------------------------------------------ pause, engine


def test_pause_in_a_rest_holds_at_once_and_the_rest_keeps_its_time(tmp_path):
    session = prepare(
        write(tmp_path, "p.toml", PROTOCOL), station(tmp_path), tmp_path, time_scale=2000
    )
    engine = session.engine
    try:
        engine.start()
        runner = engine.runners["cell1"]
        wait_for(lambda: runner.state.samples >= 5, what="rest samples")
        left = runner.state.step_remaining_second
        assert engine.request_pause("test") == ["cell1"]
        wait_for(lambda: engine.pause.state() == "paused", what="paused")
        assert engine.control_status()["state"] == "paused"
        assert runner.state.step_kind == "rest"  # held inside the rest (step 0), not after it
        samples = runner.state.samples
        time.sleep(1.5)  # 3000 simulated s: longer than the rest had left, were its clock running
        assert runner.state.samples > samples  # still sampled while held
        assert runner.state.step_index == 0 and not smu_on(session)
        assert runner.state.step_remaining_second is None  # no time runs out while held
        assert engine.request_continue("test") == ["cell1"]
        wait_for(lambda: runner.state.step_remaining_second is not None, what="continued")
        assert runner.state.step_index == 0
        still = runner.state.step_remaining_second  # the rest's clock stood still:
        assert left - 600 < still <= left
        wait_for(lambda: runner.state.step_index == 1, what="the cc step")
        engine.request_stop("test over")
        assert engine.wait(30) == "stopped"
    finally:
        session.close()
    done = actions(engine.run_path)
    kinds = [a["action"] for a in done]
    assert kinds == ["pause_requested", "paused", "continue_requested", "continued"]
    assert done[1]["message"].startswith("paused in rest step 0 (rest 2 h), ")
    assert done[3]["paused_second"] > 2000  # simulated seconds held, recorded


def smu_on(session) -> bool:
    """Whether the source drives current (a Keithley 2450 rests at 0 A with its relay closed)."""
    return abs(session.engine.runners["cell1"].state.current_ampere) > 1e-6


def test_pause_during_a_charge_waits_for_the_step_to_end_with_the_output_off(tmp_path):
    proto = PROTOCOL.replace('duration = "2 h"', 'duration = "1 min"', 1)
    session = prepare(
        write(tmp_path, "p.toml", proto), station(tmp_path), tmp_path, time_scale=2000
    )
    engine = session.engine
    try:
        engine.start()
        runner = engine.runners["cell1"]
        wait_for(lambda: runner.state.step_kind == "cc" and runner.state.samples > 2, what="cc")
        assert smu_on(session)
        engine.request_pause("test")
        assert engine.control_status()["state"] == "pausing"  # the charge goes on to its end
        assert smu_on(session) and runner.state.step_kind == "cc"
        wait_for(lambda: engine.pause.state() == "paused", what="paused after the cc step")
        assert not smu_on(session)
        assert "paused before step 2" in runner.state.step_label
        engine.request_stop("stop while paused")
        assert engine.wait(30) == "stopped"
    finally:
        session.close()
    ev = open_run(engine.run_path).read("events")
    cc_end = ev.filter((pl.col("kind") == "step_end") & (pl.col("step_index") == 1))
    paused = [a for a in actions(engine.run_path) if a["action"] == "paused"]
    assert cc_end.height == 1 and len(paused) == 1
    assert paused[0]["t"] >= cc_end["test_time_second"][0]  # held only after the step ended
    assert ev.filter(pl.col("step_index") == 2).filter(pl.col("kind") == "step_start").height == 0


# ------------------------------------------------------------------------------ the folder


def test_control_folder_is_created_private_and_a_foreign_or_open_one_is_refused(ctl_dir):
    folder = control.private_dir()
    assert folder == ctl_dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    folder.chmod(0o755)  # ours but open: the server narrows it, a client refuses it
    with pytest.raises(control.ControlError, match="mode 0755"):
        control.check_private(folder)
    control.private_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    link = folder.parent / "link"
    link.symlink_to(folder)
    with pytest.raises(control.ControlError, match="not a plain folder"):
        control.check_private(link)
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(control.ControlError, match="belongs to uid 65534"):
        control.private_dir()
    with pytest.raises(control.ControlError, match="belongs to uid 65534"):
        control.request(folder / "run", "status")


class FakeEngine:
    """Stands in for the engine behind a server (what the server calls, recorded)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def request_stop(self, reason="stop"):
        self.calls.append(("stop", reason))

    def request_pause(self, reason="pause", channels=None):
        self.calls.append(("pause", reason, channels))
        return ["cell1"]

    def request_continue(self, reason="continue", channels=None):
        self.calls.append(("continue", reason, channels))
        return ["cell1"]

    def control_status(self):
        return {"state": "running", "run_id": "r"}


def test_server_answers_its_user_and_socket_is_0600(ctl_dir, tmp_path):
    target = FakeEngine()
    with control.ControlServer(target, tmp_path / "run") as server:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        assert control.request(tmp_path / "run", "status")["run_id"] == "r"
        reply = control.request(tmp_path / "run", "pause", channels=["cell1"], reason="why")
        assert reply["channels"] == ["cell1"] and reply["state"] == "running"
        with pytest.raises(control.ControlError, match="unknown control command"):
            control.request(tmp_path / "run", "reboot")
        raw = socket.socket(socket.AF_UNIX)  # garbage gets an error line, the server goes on
        raw.connect(str(server.path))
        raw.sendall(b"{not json\n")
        assert b"not a JSON request" in raw.recv(4096)
        raw.close()
        assert control.request(tmp_path / "run", "stop")["ok"]
    assert target.calls[0] == ("pause", "why", ["cell1"])
    assert target.calls[1][0] == "stop"
    assert not server.path.exists()  # removed on close
    with pytest.raises(control.NotListening):
        control.request(tmp_path / "run", "status")


CONNECT_AS_NOBODY = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
try:
    s.sendall(b'{"cmd": "stop"}\\n')
except OSError:
    pass  # the server may already have hung up on us
print(s.recv(4096).decode().strip())
"""


def python_for_nobody() -> str | None:
    """A Python interpreter another user may run (the test's own may sit in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        path = Path(candidate).resolve()
        if path.is_file() and all(
            os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p != Path("/")
        ):
            return str(path)
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="running a client as another user needs root")
def test_another_user_cannot_connect_by_folder_nor_by_peer_credentials(ctl_dir, tmp_path):
    python = python_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter that user nobody may run")
    target = FakeEngine()
    nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "cwd": "/"}
    with control.ControlServer(target, tmp_path / "run") as server:
        # 1. the 0700 folder keeps another user from even reaching the socket
        out = subprocess.run(
            [python, "-c", CONNECT_AS_NOBODY, str(server.path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            **nobody,
        )
        assert out.stdout.strip() == "EACCES"
        # 2. were the folder and socket opened up (a mistake), the peer's uid is still refused
        ctl_dir.chmod(0o777)
        server.path.chmod(0o777)
        ctl_dir.parent.chmod(0o755)
        out = subprocess.run(
            [python, "-c", CONNECT_AS_NOBODY, str(server.path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            **nobody,
        )
        reply = json.loads(out.stdout)
        assert reply == {
            "ok": False,
            "error": f"permission denied: uid {NOBODY} is not this run's user",
        }
        assert server.refused == 1
        ctl_dir.chmod(0o700)
    assert target.calls == []  # nothing reached the engine


# ------------------------------------------------------------------------- the command line


def cellbench(capsys, *args: str) -> SimpleNamespace:
    """``cellbench ARGS`` in this process (the logger is the separate process)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_cli_status_pause_continue_stop_a_running_logger(ctl_dir, tmp_path, capsys):
    proto = write(tmp_path, "p.toml", PROTOCOL)
    out = tmp_path / "runs"
    logger = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cellbench.cli",
            "run",
            str(proto),
            "--station",
            str(station(tmp_path)),
            "--out",
            str(out),
            "--name",
            "r1",
            "--plain",
            "--time-scale",
            "500",
            "--cell",
            "name=A7",
            "--cell",
            "area_cm2=0.5",
            "--log",
            str(out / "r1.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,
    )
    run = out / "r1"
    try:
        wait_for(lambda: control.listening(run), 60, "the logger's control channel")
        assert (run / "logger.log").is_file() and not (out / "r1.log").exists()
        meta = load_meta(run)
        assert meta.cell.name == "A7" and meta.cell.area_cm2 == 0.5
        st = cellbench(capsys, "runs", "status", str(run))
        assert st.returncode == 0, st.stderr
        assert "run r1: running" in st.stdout and "cell1" in st.stdout and "rest" in st.stdout
        p = cellbench(capsys, "runs", "pause", str(run), "--wait", "--timeout", "30")
        assert p.returncode == 0, p.stderr
        assert "pause requested for cell1" in p.stdout and p.stdout.strip().endswith("paused")
        assert "paused" in cellbench(capsys, "runs", "status", str(run)).stdout
        bad = cellbench(capsys, "runs", "pause", str(run), "--channel", "cell9")
        assert bad.returncode == 1 and "no channel cell9" in bad.stderr
        c = cellbench(capsys, "runs", "continue", str(run))
        assert c.returncode == 0 and "continue requested for cell1" in c.stdout
        s = cellbench(capsys, "runs", "stop", str(run), "--reason", "test over")
        assert s.returncode == 0, s.stderr
        assert s.stdout.strip().endswith("stopped")
        assert logger.wait(30) == 0  # a stop over the channel is a clean end
    finally:
        if logger.poll() is None:
            logger.kill()
            logger.wait()
    assert load_meta(run).status == "stopped"
    kinds = [a["action"] for a in actions(run)]
    assert kinds == ["pause_requested", "paused", "continue_requested", "continued"]
    again = cellbench(capsys, "runs", "stop", str(run))
    assert again.returncode == 1 and "the run is stopped" in again.stderr


def test_cli_on_a_crashed_run_says_resume_or_close(ctl_dir, tmp_path, capsys):
    from cellbench.core.schema import RunMeta
    from cellbench.daq.store import create_run

    with create_run(tmp_path / "live", RunMeta(run_id="x", start_time="2026-01-01T00:00:00Z")) as w:
        shutil.copytree(w.path, tmp_path / "crashed")  # running on disk, nobody writes it
    out = cellbench(capsys, "runs", "stop", str(tmp_path / "crashed"))
    assert out.returncode == 1
    assert "no process writes it" in out.stderr and "cellbench resume" in out.stderr


def test_cell_option_that_changes_the_currents_is_refused(ctl_dir, tmp_path, capsys):
    proto = write(tmp_path, "c.toml", PROTOCOL.replace('current = "0.5 mA"', 'current = "C/4"'))
    out = cellbench(
        capsys,
        "run",
        str(proto),
        "--station",
        str(station(tmp_path)),
        "--out",
        str(tmp_path),
        "--cell",
        "nominal_capacity_ah=0.01",
    )
    assert out.returncode == 1
    assert "nominal_capacity_ah" in out.stderr and "station file" in out.stderr
    bad = cellbench(capsys, "run", str(proto), "--station", "x.toml", "--cell", "colour=red")
    assert bad.returncode == 1 and "KEY=VALUE" in bad.stderr


def test_client_finds_a_logger_started_without_xdg_runtime_dir(monkeypatch, tmp_path):
    # A service (no $XDG_RUNTIME_DIR) listens in /tmp/cellbench-<uid>; a desktop shell of the
    # same user (with $XDG_RUNTIME_DIR) still reaches it.
    monkeypatch.delenv("CELLBENCH_CONTROL_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with control.ControlServer(FakeEngine(), tmp_path / "run") as server:
        assert server.folder == Path("/tmp") / f"cellbench-{os.geteuid()}"
        runtime = tmp_path / "xdg"
        runtime.mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        assert control.control_dir() == runtime / "cellbench"
        assert control.request(tmp_path / "run", "status")["run_id"] == "r"
