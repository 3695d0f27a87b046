"""The framed, append-only journal that holds a run's newest rows until they are sealed.

A journal file is a sequence of frames; each frame is one appended batch::

    offset  size  field
    0       4     magic  b"CBJ1"
    4       8     seq    u64, little-endian: the batch's sequence number within its table
    12      4     nrows  u32: rows in the batch (lets counts skip decoding)
    16      4     size   u32: payload bytes
    20      4     crc    u32: CRC-32 of the payload followed by bytes 0..19
    24      size  payload: one Arrow IPC stream holding the batch (``DataFrame.write_ipc_stream``)

A frame is written with a single ``pwritev`` of header and payload, so once ``append`` returns the
bytes are in the kernel's page cache and survive ``kill -9`` of the writer; ``fsync`` makes them
survive a power cut. After the last frame comes zeros reserved for the next ones (an all-zero
header marks the end). A crash can only leave a *torn tail*: a last frame that is short or whose
CRC does not match; recovery truncates the file there.

Damage anywhere else (a flipped bit, a block of zeros from a failing disk) costs only the frames it
touches: the scan *resyncs* on the next valid frame (magic, a plausible header and a matching CRC
over header and payload, found by searching forward byte by byte) and reports the bytes it
skipped as a :class:`Damage`. Nothing after a damaged frame is hidden, and no repair ever cuts a
byte that precedes a valid frame.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

MAGIC = b"CBJ1"
_HEAD = struct.Struct("<4sQII")  # magic, seq, nrows, size
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _CRC.size  # 24 bytes
MAX_PAYLOAD = 2**32 - 1
RESERVE_MIN = 64 * 2**10  # bytes of zeros reserved ahead of the frames, at first ...
RESERVE_MAX = 8 * 2**20  # ... doubling up to this


@dataclass(frozen=True)
class Frame:
    """One frame found in a journal: where it is and what it holds (payload not decoded)."""

    seq: int
    nrows: int
    offset: int  # byte offset of the frame header in the file
    payload: bytes


@dataclass(frozen=True)
class Damage:
    """Bytes between two valid frames that hold no valid frame (lost batches).

    ``seq`` and ``nrows`` come from the damaged frame's own header when its magic survived (a
    hint, not a guarantee: the header may be what was damaged); the batches actually lost are the
    sequence numbers between the frames on either side.
    """

    offset: int  # byte offset of the first damaged byte (where a frame should have started)
    end: int  # byte offset of the next valid frame
    reason: str
    seq: int | None = None
    nrows: int | None = None

    def describe(self) -> str:
        return f"bytes {self.offset}..{self.end - 1} unreadable ({self.reason})"


@dataclass(frozen=True)
class ScanResult:
    """Every valid frame of a journal; what could not be read between and after them.

    ``good_end`` is the end of the last valid frame, where a repair may truncate (only a torn
    tail or reserved zeros lie beyond it).
    """

    frames: list[Frame]
    good_end: int  # bytes: end of the last valid frame
    size: int  # bytes: file size when scanned (frames, then possibly reserved zeros)
    problem: str | None  # why the bytes after ``good_end`` are not a clean end; None when clean
    need: int = 0  # data ended inside a frame: bytes from ``good_end`` that would complete it
    damaged: tuple[Damage, ...] = ()  # damage followed by valid frames (never truncated)

    @property
    def torn(self) -> bool:
        """The data after the last valid frame is a damaged or partly written frame."""
        return self.problem is not None

    @property
    def clean(self) -> bool:
        """No damage anywhere: valid frames, then nothing or reserved zeros."""
        return self.problem is None and not self.damaged


def encode_payload(df: pl.DataFrame) -> tuple[bytes, int]:
    """The frame payload for ``df`` and its CRC-32 (done outside the writer's lock)."""
    buf = io.BytesIO()
    df.write_ipc_stream(buf)
    payload = buf.getvalue()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"batch of {df.height} rows is {len(payload)} bytes; split it (max 4 GiB)")
    return payload, zlib.crc32(payload)


def header(seq: int, nrows: int, payload: bytes, payload_crc: int) -> bytes:
    """The 24-byte header; its CRC covers the payload, then the header's first 20 bytes."""
    head = _HEAD.pack(MAGIC, seq, nrows, len(payload))
    return head + _CRC.pack(zlib.crc32(head, payload_crc))


def encode(seq: int, df: pl.DataFrame) -> bytes:
    """One whole frame holding ``df`` as sequence number ``seq``."""
    payload, crc = encode_payload(df)
    return header(seq, df.height, payload, crc) + payload


def decode(frame: Frame) -> pl.DataFrame:
    """The batch a frame holds."""
    return pl.read_ipc_stream(io.BytesIO(frame.payload))


def _frame_at(view: memoryview, pos: int, size: int) -> tuple[str | None, int, int, int, int]:
    """Check the frame at ``pos``: (problem or None, seq, nrows, end, need)."""
    if size - pos < HEADER_SIZE:
        return f"truncated frame header at byte {pos}", 0, 0, 0, HEADER_SIZE
    magic, seq, nrows, length = _HEAD.unpack_from(view, pos)
    (crc,) = _CRC.unpack_from(view, pos + _HEAD.size)
    if magic != MAGIC:
        return f"bad frame magic at byte {pos}", 0, 0, 0, 0
    end = pos + HEADER_SIZE + length
    if end > size:
        return f"truncated frame payload at byte {pos} (seq {seq})", seq, nrows, 0, end - pos
    payload = view[pos + HEADER_SIZE : end]
    if zlib.crc32(view[pos : pos + _HEAD.size], zlib.crc32(payload)) != crc:
        return f"CRC mismatch in frame at byte {pos} (seq {seq})", seq, nrows, 0, 0
    return None, seq, nrows, end, 0


def _resync(data: bytes, view: memoryview, start: int, size: int) -> int | None:
    """Offset of the next valid frame after ``start`` (magic found, header and CRC check), or
    None if there is none."""
    pos = start
    while True:
        pos = data.find(MAGIC, pos + 1)
        if pos < 0:
            return None
        if _frame_at(view, pos, size)[0] is None:
            return pos


def scan_bytes(data: bytes, *, check_tail: bool = True) -> ScanResult:
    """Walk the frames in ``data`` (a journal from a frame start), resyncing after damage.

    Reserved zeros end the journal; with ``check_tail`` they are checked to be all zeros (a frame
    after them is valid data whose predecessor was lost: reported as damage, then read). Readers
    polling a live file skip the check: there zeros are where the writer appends next.

    A bad frame followed by a valid one is :class:`Damage`; a bad frame with no valid frame after
    it is the torn tail (``problem``, with ``need`` set when more bytes could complete it).
    """
    frames: list[Frame] = []
    damaged: list[Damage] = []
    pos, size, problem, need = 0, len(data), None, 0
    view = memoryview(data)
    while pos < size:
        if view[pos] == 0:  # no frame starts with 0: reserved space, the end if all zeros
            if not check_tail or data.count(0, pos) == size - pos:
                break
            problem = f"non-zero bytes after the last frame, from byte {pos}"
            seq = nrows = None
        else:
            problem, seq, nrows, end, need = _frame_at(view, pos, size)
            if problem is None:
                payload = bytes(view[pos + HEADER_SIZE : end])
                frames.append(Frame(seq, nrows, pos, payload))
                pos = end
                continue
        nxt = _resync(data, view, pos, size)
        if nxt is None:
            break  # the torn tail: nothing valid after it
        if seq is None:
            problem = f"zeros or garbage where a frame should start, at byte {pos}"
        damaged.append(Damage(pos, nxt, problem, seq or None, nrows or None))
        problem, need, pos = None, 0, nxt
    good_end = frames[-1].offset + HEADER_SIZE + len(frames[-1].payload) if frames else 0
    if problem is None:
        need = 0
    return ScanResult(frames, max(good_end, 0), size, problem, need, tuple(damaged))


def scan_file(path: Path) -> ScanResult:
    """Scan a journal file; raises FileNotFoundError if it vanished (sealed meanwhile)."""
    with open(path, "rb") as fh:
        return scan_bytes(fh.read())


class JournalFile:
    """A journal being appended to. Not thread-safe: the run writer serialises calls.

    Space is reserved ahead by writing zeros (64 KiB, doubling up to 8 MiB), and frames are
    written into it at the logical end. An fsync then rarely has to commit a new file size or new
    blocks (metadata), which makes an fsync per batch about as cheap as SQLite's WAL, whose file
    is reused in place. Readers treat an all-zero header as the end of the written data.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.size = 0  # bytes: end of the last frame written
        self.allocated = 0  # bytes: zeros written ahead of ``size``
        self.synced = 0  # bytes known to be on stable storage
        self.dir_synced = False  # the file's name is durable (its folder was fsynced)

    @property
    def dirty(self) -> bool:
        """Bytes were written that no completed fsync covers yet."""
        return self.size > self.synced

    def _reserve(self, need: int) -> None:
        if need <= self.allocated:
            return
        grow = min(max(self.allocated, RESERVE_MIN), RESERVE_MAX)
        new = max(need, self.allocated + grow)
        _pwrite_all(self.fd, [bytes(new - self.allocated)], self.allocated)
        self.allocated = new

    def write(self, head: bytes, payload: bytes) -> None:
        """Write one frame at the end with a single ``pwritev`` (short writes are completed)."""
        total = len(head) + len(payload)
        self._reserve(self.size + total)  # disk full fails here, before any byte of the frame
        try:
            _pwrite_all(self.fd, [head, payload], self.size)
        except OSError:
            # A half-written frame would hide every later frame from readers: blank it.
            with contextlib.suppress(OSError):
                _pwrite_all(self.fd, [bytes(total)], self.size)
            raise
        self.size += total

    def sync(self) -> None:
        if self.dirty:
            os.fsync(self.fd)
            self.synced = self.size

    def close(self) -> None:
        """Drop the reserved zeros, fsync, close."""
        if self.fd >= 0:
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
            self.synced = self.size
            os.close(self.fd)
            self.fd = -1


def _pwrite_all(fd: int, buffers: list[bytes], offset: int) -> None:
    total = sum(len(b) for b in buffers)
    n = os.pwritev(fd, buffers, offset)
    if n < total:
        rest = memoryview(b"".join(buffers))[n:]
        while rest:
            k = os.pwrite(fd, rest, offset + n)
            rest, n = rest[k:], n + k
