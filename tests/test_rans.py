"""The C rANS decoder (host/csrc, host/rans.py): bit-exact with CompressAI's decoder on random streams
that use every CDF row and the bypass path and on real Kodak files; a one-line error, never noise,
for streams it cannot hold."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_lic
from fuzz_rans_asan import compressai_encode, kodak_streams, random_symbols
from bench.entropy import compressai_ans
from host.container import LicFile, parse
from host.decode_cli import SHIPPED_PACKAGES
from host.decoder_package import DecoderPackage
from host.rans import LIB_ENV, CdfTable
from lic.errors import LicError


@pytest.fixture(scope="module")
def package():
    return DecoderPackage.load(SHIPPED_PACKAGES / "q3")


def compressai_decode(table, stream, indexes):
    return np.array(compressai_ans().RansDecoder().decode_with_indexes(
        stream, indexes.ravel().tolist(), table.cdf.tolist(), table.cdf_length.tolist(), table.offset.tolist()),
        dtype=np.int32)


@pytest.mark.parametrize("key", ["z", "y"])
def test_random_streams_every_row_and_bypass(package, key):
    table = getattr(package, f"{key}_table")
    idx, sym = random_symbols(table, 30, np.random.default_rng(7))
    escape = table.cdf_length[idx] - 2 + table.offset[idx]
    assert np.unique(idx).size == len(table) and ((sym >= escape) | (sym < table.offset[idx])).sum() > 50
    stream = compressai_encode(table, sym, idx)
    got = table.decode(stream, idx)
    assert np.array_equal(got, sym) and np.array_equal(got, compressai_decode(table, stream, idx))


@pytest.fixture(scope="module")
def kodak_cache(kodak, tmp_path_factory):
    return tmp_path_factory.mktemp("kodak-lic")


@pytest.fixture(scope="module")
def kodak_lic(package, kodak_cache):
    return kodak_streams(package, 2, kodak_cache)


def test_kodak_files_bit_exact(package, kodak_lic):
    for zs, zi, ys, yi in kodak_lic:
        for table, stream, idx in ((package.z_table, zs, zi), (package.y_table, ys, yi)):
            got = table.decode(stream, idx)
            assert got.shape == idx.shape and np.array_equal(got.ravel(), compressai_decode(table, stream, idx))


def test_decode_reads_and_writes_windows_in_place(package, kodak_lic):
    """A tile substream's window of the frame's index and y arrays is decoded in place: the same
    symbols as from contiguous copies, nothing outside the window written; a bad index in the
    window is still a one-line error."""
    _, _, ys, yi = kodak_lic[0]
    table = package.y_table
    m, h, w = yi.shape
    rows, cols = slice(3, h - 2), slice(5, w - 1)
    window = np.ascontiguousarray(yi[:, rows, cols])
    stream = compressai_encode(table, table.decode(ys, yi)[:, rows, cols].ravel(), window.ravel())
    frame = np.full(yi.shape, -7, np.int32)
    table.decode(stream, yi[:, rows, cols], out=frame[:, rows, cols])
    assert np.array_equal(frame[:, rows, cols], table.decode(stream, window))
    outside = np.ones(yi.shape, bool)
    outside[:, rows, cols] = False
    assert (frame[outside] == -7).all()
    bad = yi.copy()
    bad[1, rows.start, cols.start + 4] = len(table)
    with pytest.raises(LicError, match="CDF index out of range"):
        table.decode(stream, bad[:, rows, cols], out=frame[:, rows, cols])
    with pytest.raises(ValueError, match="out must be"):
        table.decode(stream, window, out=np.empty(window.shape, np.int64))


def test_corrupt_streams_are_clean_errors(package, kodak_lic):
    _, _, ys, yi = kodak_lic[0]
    table = package.y_table
    bad_index = yi.copy()
    bad_index.flat[1000] = len(table)
    # streams far too short fail the length check (host/geometry's pre-check) before the decoder runs
    cases = {"ends early": [(ys[:-4], yi)],
             "too short for": [(ys[:100], yi)],
             "32-bit words": [(b"", yi)],
             "does not end after the last symbol": [(ys + bytes(4), yi), (ys, yi[:-1])],
             "state out of its interval": [(bytes(8) + ys[8:], yi)],
             "CDF index out of range": [(ys, bad_index), (ys, -yi - 1)]}
    for message, streams in cases.items():
        for stream, idx in streams:
            with pytest.raises(LicError, match=message) as e:
                table.decode(stream, idx, "kodim01: y stream")
            assert "\n" not in str(e.value) and str(e.value).startswith("kodim01: y stream: ")
    # flipped bits: an error of some kind or, rarely, other symbols; never a crash
    rng = np.random.default_rng(0)
    errors = 0
    for _ in range(200):
        b = bytearray(ys)
        b[rng.integers(len(b))] ^= 1 << rng.integers(8)
        try:
            table.decode(bytes(b), yi)
        except LicError:
            errors += 1
    assert errors >= 190


def test_bypass_digit_count_beyond_any_encoder_is_refused():
    cdf = np.array([[0, 1 << 15, 1 << 16]], dtype=np.int32)  # values 0 and escape
    table = CdfTable(cdf, np.array([3], dtype=np.int32), np.array([0], dtype=np.int32))
    ok = compressai_encode(table, np.array([1 << 20], dtype=np.int32), np.zeros(1, dtype=np.int32))
    assert table.decode(ok, np.zeros(1, dtype=np.int32))[0] == 1 << 20
    # state = escape slot, then a digit count of 9 (> 7, the most CompressAI's encoder can write)
    state = 1 << 32 | (1 << 15) + 9  # escape slot 2^15 + 9 leaves 2^31 + 9
    with pytest.raises(LicError, match="bypass-coded value out of range"):
        table.decode(state.to_bytes(8, "little") + bytes(4), np.zeros(1, dtype=np.int32))


@pytest.mark.parametrize("cdf,length", [([0, 100, 100, 65536], 4), ([1, 100, 65536, 0], 3), ([0, 100, 65535, 0], 3),
                                        ([0, 65536, 0, 0], 5), ([0, 65536, 0, 0], 1)])
def test_bad_tables_refused(cdf, length):
    with pytest.raises(LicError, match="entropy tables rejected"):
        CdfTable(np.array([cdf], dtype=np.int32), np.array([length], dtype=np.int32), np.zeros(1, dtype=np.int32))


def test_corrupt_y_stream_through_lic_decode(kodak_lic, kodak_cache, tmp_path, capsys):
    _, _, ys, _ = kodak_lic[0]
    good = next(kodak_cache.rglob("kodim01.lic"))
    lic = parse(good.read_bytes())
    lic.streams[1] = ys[:-8]  # two words short: passes the length check, the decoder runs out
    bad = tmp_path / "bad.lic"
    bad.write_bytes(lic.to_bytes())  # CRC recomputed: only the entropy decoder can notice
    out = tmp_path / "bad.png"
    assert run_lic("decode", bad, "-o", out, "--decoder", "student") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lic: error: ") and "y stream: rANS stream ends early" in err and "\n" not in err
    assert not out.exists()


def test_missing_library_is_one_line(tmp_path):
    env = dict(os.environ, **{LIB_ENV: str(tmp_path / "nowhere.so"), "PYTHONPATH": str(REPO)})
    code = ("from host.rans import CdfTable; import numpy as np; "
            "CdfTable(np.array([[0, 65536]], dtype=np.int32), np.array([2], dtype=np.int32), np.zeros(1, dtype=np.int32))")
    r = subprocess.run([sys.executable, "-c", f"from lic.errors import LicError\ntry:\n    {code}\n"
                        f"except LicError as e:\n    print(e)"], env=env, capture_output=True, text=True)
    assert "nowhere.so is missing" in r.stdout and LIB_ENV in r.stdout


def test_bench_entropy_prints_speed_ratio(kodak, tmp_path, capsys):
    assert run_lic("bench", "entropy", "--limit", "1", "--repeat", "1", "--cache", tmp_path) == 0
    out = capsys.readouterr().out
    assert "kodim01.png" in out and "speed ratio" in out and "symbols identical" in out
