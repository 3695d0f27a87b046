"""The local control channel of a running logger: stop, pause, continue, status.

Every ``cellbench run`` (and ``resume``, ``demo``) listens on a Unix socket while its run goes
on; ``cellbench runs stop|pause|continue|status RUN`` and the GUI are its clients. Only the same
user on the same machine can use it:

* the sockets live in one folder per user, ``$XDG_RUNTIME_DIR/cellbench`` (a tmpfs only that user
  can enter) or else ``/tmp/cellbench-<uid>``; ``$CELLBENCH_CONTROL_DIR`` overrides both. The
  folder must be a real folder (not a symlink) owned by this user with mode 0700: one created
  here is; one owned by this user with wider rights is narrowed to 0700; one owned by someone
  else is refused (by server and client alike) — nobody can plant a socket for this user's runs;
* each socket is created mode 0600;
* the server reads the peer's credentials (``SO_PEERCRED``) on every connection and answers a
  process of another user only with ``permission denied`` (root included: a run belongs to its
  user).

A run's socket is named from a hash of its folder's real path (``<16 hex>.sock``), so the same
folder always maps to the same socket whatever the run is called, and the path stays far below
the 107-byte limit of socket addresses.

Protocol: one JSON object per line, each way. Requests ``{"cmd": "status"}``,
``{"cmd": "stop", "reason": "..."}``, ``{"cmd": "pause", "channels": [...] | null, "reason":
"..."}``, ``{"cmd": "continue", ...}``; replies ``{"ok": true, ...}`` (``status`` adds the
engine's :meth:`~cellbench.daq.engine.Engine.control_status`; every reply carries ``state``) or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import socket
import stat
import struct
import threading
from pathlib import Path
from typing import Any, Protocol

from cellbench.core.errors import CellbenchError

log = logging.getLogger(__name__)

COMMANDS = ("status", "stop", "pause", "continue")
MAX_REQUEST_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 5.0
_PEER_TIMEOUT_S = 2.0  # a client that connects and says nothing is dropped after this


class ControlError(CellbenchError):
    """The control channel cannot be used (no logger listening, folder not private, refused)."""


class NotListening(ControlError):
    """No logger answers for this run (it ended, crashed, or predates the control channel)."""


class Controllable(Protocol):
    """What the server drives: :class:`~cellbench.daq.engine.Engine` provides all of it."""

    def request_stop(self, reason: str = ...) -> None: ...
    def request_pause(self, reason: str = ..., channels: list[str] | None = ...) -> list[str]: ...
    def request_continue(
        self, reason: str = ..., channels: list[str] | None = ...
    ) -> list[str]: ...
    def control_status(self) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------ the folder


def control_dir() -> Path:
    """This user's folder of control sockets (not created here; see :func:`private_dir`)."""
    env = os.environ.get("CELLBENCH_CONTROL_DIR")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "cellbench"
    return Path("/tmp") / f"cellbench-{os.geteuid()}"


def check_private(path: Path, *, fix: bool = False) -> None:
    """Raise :class:`ControlError` unless ``path`` is a folder (not a symlink) owned by this user
    with no rights for group or others; with ``fix``, narrow a folder this user owns to 0700."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotListening(f"{path}: no control folder (no logger of this user runs)") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"{path}: control folder is not a plain folder; refusing to use it")
    if st.st_uid != os.geteuid():
        raise ControlError(
            f"{path}: control folder belongs to uid {st.st_uid}, not to this user "
            f"(uid {os.geteuid()}); refusing to use it (remove it or set CELLBENCH_CONTROL_DIR)"
        )
    if st.st_mode & 0o077:
        if not fix:
            raise ControlError(
                f"{path}: control folder has mode {stat.S_IMODE(st.st_mode):04o}, "
                "other users could reach it; refusing (chmod 700 it)"
            )
        os.chmod(path, 0o700)
        log.warning("%s had mode %04o; narrowed to 0700", path, stat.S_IMODE(st.st_mode))


def private_dir() -> Path:
    """:func:`control_dir`, created 0700 if missing, checked private (narrowed if needed)."""
    path = control_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ControlError(f"{path}: cannot create control folder: {exc.strerror}") from None
    check_private(path, fix=True)
    return path


def candidate_dirs() -> list[Path]:
    """Where this user's loggers may listen: :func:`control_dir`, then ``/tmp/cellbench-<uid>``
    (a logger started without ``$XDG_RUNTIME_DIR`` — a system service, cron — listens there
    while a desktop shell of the same user has it set)."""
    first = control_dir()
    fallback = Path("/tmp") / f"cellbench-{os.geteuid()}"
    return (
        [first]
        if first == fallback or os.environ.get("CELLBENCH_CONTROL_DIR")
        else [
            first,
            fallback,
        ]
    )


def _folder_serving(run_path: Path | str) -> Path:
    """The first candidate folder holding ``run_path``'s socket (else :func:`control_dir`)."""
    candidates = candidate_dirs()
    for folder in candidates:
        if socket_path(run_path, folder).exists():
            return folder
    return candidates[0]


def socket_path(run_path: Path | str, folder: Path | None = None) -> Path:
    """The control socket of the run folder ``run_path`` (in ``folder``, default this user's)."""
    real = os.path.realpath(run_path)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return (folder or control_dir()) / f"{digest}.sock"


def peer_uid(conn: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (None if the platform
    cannot say)."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return uid
    getpeereid = getattr(os, "getpeereid", None)  # not in CPython's os; BSD-only hosts
    if getpeereid is not None:
        return getpeereid(conn.fileno())[0]
    return None


# ------------------------------------------------------------------------------ the server


class ControlServer:
    """Serves one run's control socket on a daemon thread until :meth:`close`.

    ``target`` is the running engine. ``uid`` is the only user answered (this process's).
    """

    def __init__(
        self,
        target: Controllable,
        run_path: Path | str,
        *,
        folder: Path | None = None,
        uid: int | None = None,
    ):
        self.target = target
        self.run_path = Path(run_path)
        self.folder = folder or private_dir()
        if folder is not None:
            check_private(folder, fix=True)
        self.uid = os.geteuid() if uid is None else uid
        self.path = socket_path(self.run_path, self.folder)
        self.refused = 0  # connections of other users turned away
        self._sock = self._bind()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"cellbench-control-{self.run_path.name}", daemon=True
        )
        self._thread.start()

    def _bind(self) -> socket.socket:
        if self.path.exists() or self.path.is_symlink():
            try:  # a live server for this folder? (cannot be: the writer lock is held by us)
                request(self.run_path, "status", folder=self.folder, timeout_s=1.0)
            except ControlError:
                self.path.unlink(missing_ok=True)  # left by a logger that died
            else:
                raise ControlError(f"{self.path}: another logger already serves {self.run_path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket file is born 0600
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise ControlError(f"{self.path}: cannot listen: {exc.strerror}") from None
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(None)
        return sock

    def close(self) -> None:
        """Stop answering and remove the socket (only if it is still ours)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    self._serve(conn)
                except Exception as exc:  # one bad client never ends the channel
                    log.warning("control channel: %s", exc)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(_PEER_TIMEOUT_S)
        uid = peer_uid(conn)
        if uid is not None and uid != self.uid:
            self.refused += 1
            log.warning("control channel: refused a process of uid %s", uid)
            _send(
                conn, {"ok": False, "error": f"permission denied: uid {uid} is not this run's user"}
            )
            return
        buf = b""
        while True:
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                return
            if not chunk:
                return
            buf += chunk
            if len(buf) > MAX_REQUEST_BYTES:
                _send(conn, {"ok": False, "error": "request too long"})
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    _send(conn, self.handle(line))

    def handle(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"not a JSON request: {exc}"}
        if not isinstance(req, dict) or req.get("cmd") not in COMMANDS:
            return {"ok": False, "error": f"unknown command; known: {', '.join(COMMANDS)}"}
        cmd = req["cmd"]
        who = str(req.get("client") or "control channel")[:200]
        reason = str(req.get("reason") or f"{cmd} from {who}")[:500]
        channels = req.get("channels")
        if channels is not None and not (
            isinstance(channels, list) and all(isinstance(c, str) for c in channels)
        ):
            return {"ok": False, "error": "channels must be a list of channel names"}
        target = self.target
        reply: dict[str, Any] = {"ok": True}
        try:
            if cmd == "stop":
                target.request_stop(reason)
            elif cmd == "pause":
                reply["channels"] = target.request_pause(reason, channels)
            elif cmd == "continue":
                reply["channels"] = target.request_continue(reason, channels)
            status = target.control_status()
        except (RuntimeError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        if cmd == "status":
            reply.update(status)
        else:
            reply["state"] = status.get("state")
        return reply


def _send(conn: socket.socket, obj: dict[str, Any]) -> None:
    conn.sendall(json.dumps(obj, default=str).encode() + b"\n")


def serve(target: Controllable, run_path: Path | str) -> ControlServer | None:
    """Start the control channel of a running logger; None (with a warning) where it cannot
    run — the run goes on either way, stoppable by signals."""
    if not hasattr(socket, "AF_UNIX"):
        log.warning("no Unix sockets on this platform: the run has no control channel")
        return None
    try:
        return ControlServer(target, run_path)
    except ControlError as exc:
        log.warning("control channel not available: %s", exc)
        return None


# ------------------------------------------------------------------------------ the client


def request(
    run_path: Path | str,
    cmd: str,
    *,
    folder: Path | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
    **params: Any,
) -> dict[str, Any]:
    """Send ``cmd`` (``status``, ``stop``, ``pause``, ``continue``) to the logger of
    ``run_path``; its reply. Raises :class:`NotListening` when no logger answers,
    :class:`ControlError` when the folder is not private or the logger refuses."""
    if cmd not in COMMANDS:
        raise ControlError(f"unknown control command {cmd!r}; known: {', '.join(COMMANDS)}")
    folder = folder or _folder_serving(run_path)
    check_private(folder)
    path = socket_path(run_path, folder)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotListening(
                f"{run_path}: no logger is listening (the run is not running here, or its "
                "process died: see 'cellbench runs show' / 'cellbench resume')"
            ) from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied") from None
        uid = peer_uid(sock)
        if uid is not None and uid != os.geteuid():
            raise ControlError(f"{path}: served by uid {uid}, not by this user; refusing")
        body = {"cmd": cmd, **{k: v for k, v in params.items() if v is not None}}
        sock.sendall(json.dumps(body).encode() + b"\n")
        data = _read_line(sock, timeout_s)
    except TimeoutError:
        raise ControlError(
            f"{run_path}: the logger did not answer within {timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise ControlError(f"{run_path}: control channel: {exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"{run_path}: unreadable reply {data[:80]!r}") from None
    if not reply.get("ok"):
        raise ControlError(f"{run_path}: {cmd} refused: {reply.get('error', 'no reason given')}")
    return reply


def _read_line(sock: socket.socket, timeout_s: float) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST_BYTES * 16:
            break
    return buf.split(b"\n", 1)[0]


def listening(run_path: Path | str) -> bool:
    """Whether a logger answers on ``run_path``'s control socket (quick, never raises)."""
    try:
        request(run_path, "status", timeout_s=1.0)
    except (ControlError, OSError):
        return False
    return True


def diagnose(run_path: Path | str) -> str:
    """Why no logger answers for ``run_path``, in words a technician can act on."""
    from cellbench.daq.run_reader import load_meta, writer_active

    path = Path(run_path)
    try:
        meta = load_meta(path)
    except CellbenchError as exc:
        return str(exc)
    if meta.status != "running":
        return f"{path}: the run is {meta.status}; no logger runs it any more"
    if writer_active(path):
        pid = meta.extra.get("pid") if isinstance(meta.extra, dict) else None
        host = meta.extra.get("host") if isinstance(meta.extra, dict) else None
        if pid is None:  # not a logger's run.json: a script or program using the run store
            return (
                f"{path}: a process writes this run but no cellbench logger stands behind it "
                "(a script or program using the run store, or an older cellbench): it has no "
                "control channel; stop it where it runs"
            )
        where = f"pid {pid} on {host}" if host else f"pid {pid}"
        return (
            f"{path}: a logger writes this run ({where}) but its control channel "
            "does not answer (another machine, another user, or an older cellbench): stop it "
            f"there, e.g. kill -TERM {pid}"
        )
    return (
        f"{path}: run.json says running but no process writes it (the logger died): "
        f"continue it with 'cellbench resume {path}' or close it with "
        f"'cellbench resume {path} --close'"
    )
