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
CRC does not match. Readers stop at the first bad frame; recovery truncates the file there.
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
class ScanResult:
    """Frames of a journal up to the first bad one; ``good_end`` is where a repair truncates."""

    frames: list[Frame]
    good_end: int  # bytes: end of the last good frame
    size: int  # bytes: file size when scanned (frames, then possibly reserved zeros)
    problem: str | None  # why the scan stopped at a damaged frame; None when clean
    need: int = 0  # data ended inside a frame: bytes from ``good_end`` that would complete it

    @property
    def torn(self) -> bool:
        """The scan stopped at a damaged or partly written frame (not at reserved zeros)."""
        return self.problem is not None


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


def scan_bytes(data: bytes, *, check_tail: bool = True) -> ScanResult:
    """Walk the frames in ``data`` (a journal from a frame start) and stop at the first bad one.

    Reserved zeros end the journal; with ``check_tail`` they are checked to be all zeros (a frame
    after them is damage: its predecessor was lost). Readers polling a live file skip the check.
    """
    frames: list[Frame] = []
    pos, size, problem, need = 0, len(data), None, 0
    view = memoryview(data)
    while pos < size:
        if view[pos] == 0:  # no frame starts with 0: reserved space, the end if all zeros
            if check_tail and data.count(0, pos) != size - pos:
                problem = f"non-zero bytes after the last frame, from byte {pos}"
            break
        if size - pos < HEADER_SIZE:
            problem = f"truncated frame header at byte {pos}"
            need = HEADER_SIZE
            break
        magic, seq, nrows, length = _HEAD.unpack_from(view, pos)
        (crc,) = _CRC.unpack_from(view, pos + _HEAD.size)
        if magic != MAGIC:
            problem = f"bad frame magic at byte {pos}"
            break
        end = pos + HEADER_SIZE + length
        if end > size:
            problem = f"truncated frame payload at byte {pos} (seq {seq})"
            need = HEADER_SIZE + length
            break
        payload = view[pos + HEADER_SIZE : end]
        if zlib.crc32(view[pos : pos + _HEAD.size], zlib.crc32(payload)) != crc:
            problem = f"CRC mismatch in frame at byte {pos} (seq {seq})"
            break
        frames.append(Frame(seq, nrows, pos, bytes(payload)))
        pos = end
    return ScanResult(frames, pos, size, problem, need)


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
