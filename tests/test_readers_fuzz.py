"""Fuzzing of the binary readers: mutated real files must give a ReaderError or a frame, never
another exception and never a hang.

Each input is a small version of a real file (the first rows of biol.mpr, a small .ndax built
with the real table layout, small .nda files written from the published record layout) so that
one read costs milliseconds; mutations are bit flips, truncation, byte insertion, chunk
duplication and extreme integers over 4-byte fields, one to three per input. Hypothesis runs
derandomized (fixed seed) with a deadline per input, so a hang fails the test.
"""

from __future__ import annotations

import contextlib
import io
import random
import shutil
import struct
import warnings
import zipfile
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_files import (
    nda_protocol,
    nda_v29_bytes,
    nda_v91_bytes,
    nda_v130_bytes,
    ndax_bytes,
    ndax_members,
    xlsx_bytes,
)

from cellbench.analysis.readers import ReaderError, read
from cellbench.analysis.readers import cyclers as cyclers_mod
from cellbench.analysis.readers.bdf import read_parquet_bdf
from cellbench.analysis.readers.biologic_mpr import modules, parse_mpr
from cellbench.analysis.readers.neware_nda import parse_nda
from cellbench.analysis.readers.neware_ndax import parse_ndax, read_members
from cellbench.analysis.readers.xlsx import parse_xlsx

EXAMPLES = 10_000
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=list(HealthCheck),
)


def mutate(seed: bytes, key: int) -> bytes:
    """One to three mutations of ``seed`` chosen by ``key`` (so hypothesis draws one integer
    per input and can shrink it; the mutation itself costs microseconds)."""
    rng = random.Random(key)
    data = bytearray(seed)
    for _ in range(rng.randint(1, 3)):
        n = len(data)
        if n == 0:
            break
        kind = rng.choice(("flip", "truncate", "insert", "duplicate", "overwrite"))
        if kind == "flip":
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[rng.randrange(n) :]
        elif kind == "insert":
            pos = rng.randrange(n + 1)
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == "duplicate":
            a = rng.randrange(n)
            b = rng.randint(a, min(n, a + 256))
            pos = rng.randrange(n + 1)
            data[pos:pos] = data[a:b]
        else:  # an extreme integer over a 4-byte field (lengths, counts, IDs)
            pos = rng.randrange(max(1, n - 3))
            value = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x195, 65535))
            data[pos : pos + 4] = struct.pack("<I", value)[: n - pos]
    return bytes(data)


KEYS = st.integers(0, 2**64 - 1)


def _small_mpr(real: bytes, rows: int = 40) -> bytes:
    """biol.mpr with its data module cut to its first ``rows`` rows."""
    mods = modules("biol.mpr", real)
    data = next(m for m in mods if m.short_name == "VMP data")
    n_total = struct.unpack_from("<I", real, data.offset)[0]
    row_size = (data.length - 0x195) // n_total
    body = bytearray(real[data.offset : data.offset + 0x195 + rows * row_size])
    struct.pack_into("<I", body, 0, rows)
    header_at = data.offset - 57
    header = bytearray(real[header_at : data.offset])
    struct.pack_into("<I", header, 41, len(body))
    out = real[:header_at] + bytes(header) + bytes(body)
    return out + real[data.offset + data.length :]


def _reads_or_reader_error(read, *args) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(ReaderError):
            read(*args)


@pytest.fixture(scope="module")
def small_mpr(shared_data):
    seed = _small_mpr((shared_data / "cycling" / "biol.mpr").read_bytes())
    assert len(seed) < 20_000
    return seed


def test_small_mpr_seed_reads(small_mpr):
    assert parse_mpr("seed.mpr", small_mpr).frame.height == 40


def test_fuzz_mpr(small_mpr):
    @FUZZ
    @given(KEYS)
    def run(key):
        _reads_or_reader_error(parse_mpr, "fuzz.mpr", mutate(small_mpr, key))

    run()


NDAX_MEMBERS = ndax_members(n=300, record_every=10)
NDAX_VERSIONS = {v: ndax_members(n=300, record_every=10, version=v) for v in (14, 16, 17)}


@pytest.mark.parametrize("version", list(NDAX_VERSIONS))
@pytest.mark.parametrize("member", ["data.ndc", "data_step.ndc", "data_runInfo.ndc"])
def test_fuzz_ndax_tables(member, version):
    """Mutations inside one table of an otherwise intact archive: exercises the ndc parsing of
    each version's record layout (bit masks, 37/55/100-byte records)."""
    base = NDAX_VERSIONS[version]
    seed = base[member]

    # 10,008 inputs over the three tables of three versions, beside the 10,000 mutated archives.
    @settings(FUZZ, max_examples=EXAMPLES // 9 + 1)
    @given(KEYS)
    def run(key):
        members = {**base, member: mutate(seed, key)}
        _reads_or_reader_error(read_members, "fuzz.ndax", members)

    run()


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_fuzz_ndax_archive(compression):
    """Mutations of the archive itself: zip headers, compressed streams, XML."""
    seed = ndax_bytes(NDAX_MEMBERS, compression=compression)

    @settings(FUZZ, max_examples=EXAMPLES // 2)
    @given(KEYS)
    def run(key):
        _reads_or_reader_error(parse_ndax, "fuzz.ndax", mutate(seed, key))

    run()


# Every fourth record of the writer's two-cycle protocol (rest, CC, CV, rest, discharge): 35 data
# records, with auxiliary records, behind a short header.
_NDA_SMALL = {k: v[::4] for k, v in nda_protocol().items()}
NDA_SEEDS = {
    "v29": nda_v29_bytes(_NDA_SMALL, header_len=256),
    "v130": nda_v130_bytes(_NDA_SMALL, aux_every=5),
    "bts91": nda_v91_bytes(_NDA_SMALL),
}


@pytest.mark.parametrize("version", list(NDA_SEEDS))
def test_fuzz_nda(version):
    """Mutated .nda files of version 29 (86-byte records, aux temperatures, range codes), 130
    (BTS 9.0: 88-byte records, closing block) and BTS 9.1 (variable record length): 10,000
    inputs over the three, as for the .ndax archive above (~3 ms per read: most reads end in a
    whole frame). Off-suite runs of 10,000 per version (30 to 55 s each on the 2-core
    development machine) found nothing either."""
    seed = NDA_SEEDS[version]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert parse_nda("seed.nda", seed).frame.height == 35

    @settings(FUZZ, max_examples=EXAMPLES // len(NDA_SEEDS) + 1)
    @given(KEYS)
    def run(key):
        _reads_or_reader_error(parse_nda, "fuzz.nda", mutate(seed, key))

    run()


@pytest.mark.skipif(shutil.which("mdb-export") is None, reason="mdb-export (mdbtools) missing")
def test_fuzz_arbin_res_lightly(shared_data, tmp_path_factory, monkeypatch):
    """The .res goes through mdb-export (a separate program, about 0.2 s per file): 60 mutated
    databases only, each with a short timeout, to show that whatever mdbtools does with a damaged
    file ends as a ReaderError."""
    monkeypatch.setattr(cyclers_mod, "MDB_TIMEOUT_SECOND", 20)
    seed = (shared_data / "cycling" / "20160805_test001_45_cc_01.res").read_bytes()
    path = tmp_path_factory.mktemp("fuzz") / "x.res"

    @settings(FUZZ, max_examples=60, deadline=timedelta(seconds=60))
    @given(KEYS)
    def run(key):
        path.write_bytes(mutate(seed, key))
        _reads_or_reader_error(cyclers_mod.read_arbin_res, path)

    run()


@pytest.mark.skipif(shutil.which("mdb-export") is None, reason="mdb-export (mdbtools) missing")
def test_fuzz_arbin_res_tables(shared_data, monkeypatch):
    """What cellbench itself parses of a .res: the tables mdb-export writes, mutated (the
    database file itself is fuzzed through mdbtools above). 10,000 inputs, ~4 ms each."""
    real = shared_data / "cycling" / "20160805_test001_45_cc_01.res"
    table = cyclers_mod.mdb_export(real, cyclers_mod.ARBIN_TABLE).encode()
    seeds = {
        cyclers_mod.ARBIN_TABLE: b"\n".join(table.split(b"\n")[:60]),
        "Global_Table": cyclers_mod.mdb_export(real, "Global_Table").encode(),
    }
    mutated: dict[str, bytes] = {}
    monkeypatch.setattr(
        cyclers_mod, "mdb_export", lambda path, name: mutated[name].decode("utf-8", "replace")
    )

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(KEYS)
    def run(key):
        which = key % 4 == 0  # one input in four damages the test's Global_Table
        for n, (name, seed) in enumerate(seeds.items()):
            mutated[name] = mutate(seed, key) if (n == 1) == which else seed
        _reads_or_reader_error(cyclers_mod.read_arbin_res, real)

    run()


def test_fuzz_bdf_parquet(tmp_path):
    """Damaged parquet (a damaged data page can panic polars' decoder: still a ReaderError).
    10,000 inputs, ~2 ms each."""
    frame = pl.DataFrame(
        {
            "test_time_second": [float(k) for k in range(30)],
            "voltage_volt": [3.5 + 0.001 * k for k in range(30)],
            "current_ampere": [0.1] * 30,
            "cycle_count": pl.Series([1] * 30, dtype=pl.Int32),
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    seed = buffer.getvalue()
    path = tmp_path / "x.parquet"

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(KEYS)
    def run(key):
        path.write_bytes(mutate(seed, key))
        _reads_or_reader_error(read_parquet_bdf, path)

    run()


def test_fuzz_xlsx():
    """Mutated workbooks (zip, XML, shared-string indexes, cell references)."""
    header = ["Record", "Cycle", "Step", "TestTime", "Current/mA", "Voltage/V"]
    rows = [header] + [[k + 1, 1, 1, k * 10, 1.0, 3.5 + 0.001 * k] for k in range(30)]
    seed = xlsx_bytes({"Record": rows})

    @FUZZ
    @given(KEYS)
    def run(key):
        _reads_or_reader_error(parse_xlsx, "fuzz.xlsx", mutate(seed, key))

    run()


TEXT_FILES = [
    "eis/exampleData.csv",
    "eis/exampleDataBioLogic.mpt",
    "eis/exampleDataGamryABORT.DTA",
    "eis/exampleDataZPlot.z",
    "eis/exampleDataAutolab.txt",
    "eis/exampleDataCHInstruments.txt",
    "eis/exampleDataParstat.txt",
    "cycling/neware_uio.csv",
    "cycling/maccor_002.txt",
    "cycling/bad/custom_good_small.csv",
]


@pytest.mark.parametrize("name", TEXT_FILES)
def test_fuzz_text_readers_lightly(shared_data, tmp_path, name):
    """Text formats through detection and reading, on each file's first 80 lines: 150 mutations
    each (an off-suite run of 1,500 on the whole files found nothing either); a damaged text file
    must end as a ReaderError too."""
    src = shared_data / name
    seed = b"\n".join(src.read_bytes().split(b"\n")[:80])
    path = tmp_path / f"x{src.suffix}"

    @settings(FUZZ, max_examples=150)
    @given(KEYS)
    def run(key):
        path.write_bytes(mutate(seed, key))
        _reads_or_reader_error(read, path)

    run()
