"""The journal's frame format: any cut or flipped byte yields a clean prefix of the batches."""

from __future__ import annotations

import os

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbench.daq import journal


def batches(sizes: list[int]) -> list[pl.DataFrame]:
    out, first = [], 0
    for n in sizes:
        out.append(pl.DataFrame({"test_time_second": [float(first + i) for i in range(n)]}))
        first += n
    return out


def encoded(sizes: list[int]) -> tuple[list[pl.DataFrame], bytes, list[int]]:
    dfs = batches(sizes)
    frames = [journal.encode(seq, df) for seq, df in enumerate(dfs)]
    ends = []
    pos = 0
    for f in frames:
        pos += len(f)
        ends.append(pos)
    return dfs, b"".join(frames), ends


SIZES = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(SIZES, st.data())
def test_cut_anywhere_returns_whole_frames_before_the_cut(sizes, data):
    dfs, blob, ends = encoded(sizes)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    scan = journal.scan_bytes(blob[:cut])
    whole = sum(1 for e in ends if e <= cut)
    assert [f.seq for f in scan.frames] == list(range(whole))
    assert scan.good_end == (ends[whole - 1] if whole else 0)
    assert scan.torn == (cut != scan.good_end)
    for f, df in zip(scan.frames, dfs, strict=False):
        assert journal.decode(f).equals(df) and f.nrows == df.height


@settings(max_examples=60, deadline=None)
@given(SIZES, st.data())
def test_flipped_byte_loses_only_the_frame_it_hits(sizes, data):
    dfs, blob, ends = encoded(sizes)
    at = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    damaged = bytearray(blob)
    damaged[at] ^= 1 << bit
    scan = journal.scan_bytes(bytes(damaged))
    hit = next(i for i, e in enumerate(ends) if at < e)  # the frame holding the flipped byte
    assert [f.seq for f in scan.frames] == [i for i in range(len(dfs)) if i != hit]
    assert not scan.clean
    if hit == len(dfs) - 1:  # nothing valid follows: the damage is the tail
        assert scan.torn and not scan.damaged and scan.good_end == (ends[hit - 1] if hit else 0)
    else:
        (d,) = scan.damaged
        assert d.offset == (ends[hit - 1] if hit else 0) and d.end == ends[hit]
        assert not scan.torn and scan.good_end == len(blob)
    for f in scan.frames:
        assert journal.decode(f).equals(dfs[f.seq])


@settings(max_examples=30, deadline=None)
@given(SIZES, st.data())
def test_a_block_of_zeros_costs_only_the_frames_it_covers(sizes, data):
    dfs, blob, ends = encoded([*sizes, 3])  # a last frame, so something valid can follow
    at = data.draw(st.integers(min_value=0, max_value=ends[-2] - 1))
    n = data.draw(st.integers(min_value=1, max_value=ends[-2] - at))
    damaged = bytearray(blob)
    damaged[at : at + n] = bytes(n)
    scan = journal.scan_bytes(bytes(damaged))
    starts = [0, *ends[:-1]]
    hit = {
        i for i, (a, e) in enumerate(zip(starts, ends, strict=True)) if damaged[a:e] != blob[a:e]
    }
    assert [f.seq for f in scan.frames] == [i for i in range(len(dfs)) if i not in hit]
    assert bool(scan.damaged) == bool(hit) and not scan.torn


def test_header_layout_is_24_bytes_little_endian():
    frame = journal.encode(7, pl.DataFrame({"x": [1.0, 2.0]}))
    assert frame[:4] == journal.MAGIC
    assert int.from_bytes(frame[4:12], "little") == 7
    assert int.from_bytes(frame[12:16], "little") == 2
    assert int.from_bytes(frame[16:20], "little") == len(frame) - journal.HEADER_SIZE


@settings(max_examples=30, deadline=None)
@given(SIZES, st.integers(min_value=1, max_value=5000), st.data())
def test_reserved_zeros_end_the_journal_cleanly_unless_data_follows(sizes, zeros, data):
    dfs, blob, _ = encoded(sizes)
    scan = journal.scan_bytes(blob + bytes(zeros))
    assert len(scan.frames) == len(dfs) and not scan.torn and scan.good_end == len(blob)
    # a frame found after a gap of zeros (lost before it in a power cut) is damage, not data
    at = data.draw(st.integers(min_value=0, max_value=zeros - 1))
    tail = bytearray(zeros)
    tail[at] = 1
    scan = journal.scan_bytes(blob + bytes(tail))
    assert len(scan.frames) == len(dfs) and scan.torn and scan.good_end == len(blob)


def test_journal_file_reserves_space_and_close_trims_it(tmp_path):
    jf = journal.JournalFile(tmp_path / "j.cbj")
    frames = [journal.encode(i, df) for i, df in enumerate(batches([3, 4, 5]))]
    for f in frames:
        jf.write(f[: journal.HEADER_SIZE], f[journal.HEADER_SIZE :])
    assert jf.dirty and (tmp_path / "j.cbj").stat().st_size >= journal.RESERVE_MIN
    scan = journal.scan_file(tmp_path / "j.cbj")
    assert [f.nrows for f in scan.frames] == [3, 4, 5] and not scan.torn
    jf.sync()
    assert not jf.dirty
    jf.close()
    assert (tmp_path / "j.cbj").read_bytes() == b"".join(frames)


def test_reader_cache_follows_a_live_journal_across_blocks_and_partial_frames(tmp_path):
    from cellbench.daq.run_reader import _BLOCK, JournalCache

    path = tmp_path / "j.cbj"
    jf = journal.JournalFile(path)

    def put(seq: int, df: pl.DataFrame) -> bytes:
        frame = journal.encode(seq, df)
        jf.write(frame[: journal.HEADER_SIZE], frame[journal.HEADER_SIZE :])
        return frame

    big = pl.DataFrame({"x": [float(i) for i in range(_BLOCK // 8 * 3)]})  # spans 3+ blocks
    small = pl.DataFrame({"x": [1.0, 2.0]})
    cache = JournalCache()
    assert cache.frames(path) == []
    put(0, small)
    put(1, big)
    put(2, small)
    frames = cache.frames(path)
    assert [f.nrows for f in frames] == [2, big.height, 2]
    assert cache.decode(path, frames[1]).equals(big)
    half = journal.encode(3, small)
    os.pwrite(jf.fd, half[:30], jf.size)  # the writer is in the middle of frame 3
    assert len(cache.frames(path)) == 3
    put(3, small)
    assert [f.seq for f in cache.frames(path)] == [0, 1, 2, 3]
    jf.close()
    assert [f.seq for f in cache.frames(path)] == [0, 1, 2, 3]
