"""Fuzz the C rANS decoder under AddressSanitizer + UBSan (`make asan-rans`; not part of `make test`).

Writes a corpus per entropy table (z and y of the shipped q3 package): random symbol streams that use
every CDF row and the bypass path, plus the streams of two Kodak files, all coded by CompressAI's
encoder; builds host/csrc/fuzz_rans.c with -fsanitize=address,undefined; runs it over each corpus
with COUNT mutations. A read or write out of bounds, or undefined behaviour, stops the run.

    python tests/fuzz_rans_asan.py --seed 1 --count 20000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.entropy import compressai_ans, encoded_files, stream_jobs  # noqa: E402
from bench.evaluate import DEFAULT_DATA  # noqa: E402
from host.decode_cli import SHIPPED_PACKAGES  # noqa: E402
from host.decoder_package import DecoderPackage  # noqa: E402

BYPASS_LIMIT = 1 << 27  # |value| beyond which CompressAI's encoder loops forever (see host/csrc/lic_rans.c)


def random_symbols(table, per_row: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(indexes, symbols): every CDF row `per_row` times in random order; symbols mostly drawn from
    the row's own distribution, some just outside its range and some far outside (bypass, several
    digits), and the extreme values the bypass can carry."""
    n_rows = len(table)
    idx = rng.permutation(np.repeat(np.arange(n_rows, dtype=np.int32), per_row))
    length, offset = table.cdf_length[idx], table.offset[idx]
    u = rng.integers(0, 1 << 16, idx.size)
    value = np.array([np.searchsorted(table.cdf[i, :length_i], v, side="right") - 1
                      for i, length_i, v in zip(idx, length, u)], dtype=np.int64)
    value = np.minimum(value, length - 3)  # the last value is the bypass escape, not a symbol
    near = rng.random(idx.size) < 0.05
    value[near] = rng.integers(-20, length[near] + 20)
    far = rng.random(idx.size) < 0.005
    value[far] = rng.integers(-BYPASS_LIMIT + 1, BYPASS_LIMIT, far.sum())
    value[:2] = [-BYPASS_LIMIT + 1, length[1] - 2 + BYPASS_LIMIT - 1]
    return idx, (value + offset).astype(np.int32)


def compressai_encode(table, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
    return compressai_ans().RansEncoder().encode_with_indexes(
        symbols.ravel().tolist(), indexes.ravel().astype(np.int32).tolist(),
        table.cdf.tolist(), table.cdf_length.tolist(), table.offset.tolist())


def kodak_streams(package, count: int, cache: Path):
    """(z stream, z indexes, y stream, y indexes) of the first `count` Kodak files (v2, shipped q3)."""
    out = []
    for name, data in encoded_files(package, DEFAULT_DATA, count, cache).items():
        (_, zs, zi), (_, ys, yi) = stream_jobs(package, data, name)
        out.append((zs, zi, ys, yi))
    return out


def write_corpus(path: Path, table, streams: list[tuple[bytes, np.ndarray, np.ndarray]]) -> None:
    le = "<i4"
    with open(path, "wb") as f:
        f.write(b"LICRFZ1\0")
        f.write(np.array(table.cdf.shape, dtype=le).tobytes())
        for a in (table.cdf, table.cdf_length, table.offset):
            f.write(np.ascontiguousarray(a, dtype=le).tobytes())
        f.write(np.array([len(streams)], dtype="<u4").tobytes())
        for data, indexes, expected in streams:
            f.write(np.array([len(data)], dtype="<u4").tobytes() + data)
            f.write(np.array([indexes.size], dtype="<u4").tobytes())
            f.write(np.ascontiguousarray(indexes.ravel(), dtype=le).tobytes())
            f.write(np.ascontiguousarray(expected.ravel(), dtype=le).tobytes())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=20000, help="mutated streams per table (z and y)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "asan-rans")
    args = p.parse_args(argv)
    harness = REPO / "build" / "host" / "fuzz_rans"
    subprocess.run(["make", "-s", "-C", str(REPO / "host" / "csrc"), "fuzz", f"FUZZ_OUT={harness}"], check=True)
    package = DecoderPackage.load(SHIPPED_PACKAGES / "q3")
    rng = np.random.default_rng(args.seed)
    kodak = kodak_streams(package, 2, REPO / "build" / "bench" / "entropy")
    args.out.mkdir(parents=True, exist_ok=True)
    for key, table, per_row in (("z", package.z_table, 40), ("y", package.y_table, 200)):
        streams = []
        for size in (per_row, 1):
            idx, sym = random_symbols(table, size, rng)
            streams.append((compressai_encode(table, sym, idx), idx, sym))
        for zs, zi, ys, yi in kodak:
            data, idx = (zs, zi) if key == "z" else (ys, yi)
            streams.append((data, idx, table.decode(data, idx)))
        corpus = args.out / f"corpus_{key}.bin"
        write_corpus(corpus, table, streams)
        subprocess.run([str(harness), str(corpus), str(args.seed), str(args.count)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
