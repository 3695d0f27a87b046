"""The lab archive: immutable copies of sealed Parquet segments in a folder or an object store.

A location is a local or mounted folder (``/mnt/lab-archive``, ``file:///...``) or any URL fsspec
understands (``s3://bucket/prefix`` for S3 or MinIO, with s3fs installed; endpoint and keys come
from the usual AWS environment or config files, never from cellbench's command line). Layout::

    LOCATION/<run_id>/run.json
    LOCATION/<run_id>/<table>/seg-<first>-<last>.parquet      copied byte for byte

A segment is uploaded under a temporary name where the store can rename (folders), then read back
and its SHA-256 compared with the local file's; only then does :meth:`Archive.put_segment` return
(and the caller records it in the catalog as archived). A segment already at the destination with
the right checksum is not sent again; one with a wrong checksum (a copy cut short) is replaced.
Segment names are unique for their content (batches first..last of a table), so nothing that was
verified is ever rewritten.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cellbench.core.errors import CellbenchError

_BLOCK = 4 * 2**20


class ArchiveError(CellbenchError):
    """The archive cannot be reached, written or read; names the location (never a secret)."""


@dataclass(frozen=True)
class ArchivedSegment:
    """A segment verified at the destination."""

    uri: str
    bytes: int
    sha256: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


class Archive:
    """One archive location, opened through fsspec."""

    def __init__(self, location: str | os.PathLike):
        import fsspec

        text = str(location)
        if not text:
            raise ArchiveError("empty archive location")
        try:
            fs, root = fsspec.core.url_to_fs(text)
        except (ImportError, ValueError) as exc:
            raise ArchiveError(f"archive {_safe(text)}: {exc}") from None
        self.location = text
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self._local = "file" in _protocols(fs)

    def __repr__(self) -> str:
        return f"Archive({_safe(self.location)!r})"

    def _error(self, message: str) -> ArchiveError:
        return ArchiveError(f"archive {_safe(self.location)}: {message}")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri(self, path: str) -> str:
        """A URL for ``path`` that fsspec opens again (the protocol prefix kept)."""
        return path if self._local else self.fs.unstrip_protocol(path)

    # ------------------------------------------------------------------------------ writing

    def put_segment(self, local: Path, run_id: str, table: str) -> ArchivedSegment:
        """Copy ``local`` to ``<run_id>/<table>/<name>`` and verify its SHA-256 there."""
        local = Path(local)
        digest = sha256_file(local)
        size = local.stat().st_size
        dest = self.path(run_id, table, local.name)
        try:
            if self.fs.exists(dest) and self._digest(dest) == digest:
                return ArchivedSegment(self.uri(dest), size, digest)
            self.fs.makedirs(self.path(run_id, table), exist_ok=True)
            if self._local:  # write beside, fsync, rename: a reader never sees half a file
                tmp = f"{dest}.{os.getpid()}.tmp"
                self.fs.put_file(str(local), tmp)
                _fsync(tmp)
                self.fs.mv(tmp, dest)
                _fsync_dir(posixpath.dirname(dest))
            else:
                self.fs.put_file(str(local), dest)
            got = self._digest(dest)
        except OSError as exc:
            raise self._error(f"cannot store {dest}: {exc}") from None
        if got != digest:
            raise self._error(
                f"{dest} reads back with SHA-256 {got[:12]}..., "
                f"expected {digest[:12]}... (not marked archived; will retry)"
            )
        return ArchivedSegment(self.uri(dest), size, digest)

    def put_meta(self, run_id: str, data: bytes) -> None:
        """Store ``run.json`` of a run (replaced as the run's status changes)."""
        dest = self.path(run_id, "run.json")
        try:
            self.fs.makedirs(self.path(run_id), exist_ok=True)
            with self.fs.open(dest, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise self._error(f"cannot store {dest}: {exc}") from None

    # ------------------------------------------------------------------------------ reading

    def _digest(self, path: str) -> str:
        h = hashlib.sha256()
        with self.fs.open(path, "rb") as fh:
            while block := fh.read(_BLOCK):
                h.update(block)
        return h.hexdigest()

    def fetch(self, uri: str, dest: Path, *, sha256: str | None = None) -> Path:
        """Copy the archived file ``uri`` to ``dest``, checking its SHA-256 when given."""
        path = self.fs._strip_protocol(uri) if not self._local else uri
        try:
            self.fs.get_file(path, str(dest))
        except (OSError, FileNotFoundError) as exc:
            raise self._error(f"cannot read {uri}: {exc}") from None
        if sha256 is not None and sha256_file(dest) != sha256:
            raise self._error(f"{uri} does not match its checksum")
        return dest

    def read_segment(self, uri: str) -> pl.DataFrame:
        """A segment as a polars frame, read straight from the archive."""
        path = self.fs._strip_protocol(uri) if not self._local else uri
        try:
            with self.fs.open(path, "rb") as fh:
                return pl.read_parquet(fh)
        except (OSError, FileNotFoundError) as exc:
            raise self._error(f"cannot read {uri}: {exc}") from None

    def list_segments(self, run_id: str, table: str) -> list[str]:
        """Names of the segment files of a run's table in the archive."""
        folder = self.path(run_id, table)
        try:
            names = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(n) for n in names if n.endswith(".parquet"))


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _safe(location: str) -> str:
    """The location without any user:password part of a URL."""
    if "://" in location and "@" in location.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = location.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return location


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
