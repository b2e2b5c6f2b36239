"""`lic bench substreams`: what format v3's tile substreams cost in rate and gain in decode time.

For each image (Kodak by default) the teacher's y and scale indexes are computed once; y is coded
by CompressAI's encoder as one stream (format v2) and as one substream per tile core of the tile
geometry (format v3), and both files are assembled by host/container.py, so the sizes are the sizes
of the real files. The indexes come from the shipped integer h_s where the quality has one (then the
files are exactly what `lic encode --integer-hs [--tiles]` writes), else from the teacher's float
h_s (same streams and container, labelled). Then the y substreams are decoded with the C decoder on
1 and 2 threads (wall time, best of --repeat), beside the single v2 stream. Wall time with threads is
only meaningful on an otherwise idle machine, so each substream's CPU time (thread_time, immune to
other processes) is measured too, and the 2-core time is derived from it as the longest core's
share when the substreams are dealt to two cores (the lower bound a 2-thread decode approaches).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.evaluate import DEFAULT_DATA, first_images, load_images
from host.container import FORMAT_V2, FORMAT_V3, LicFile
from host.runtime import decode_y, y_regions
from lic.errors import LicError
from quantize.encode_cli import tile_geometry
from training.teacher import load_default, shipped_entry
from training.teacher_codec import (EntropyModels, cdf_tables, pad_replicate, scale_indexes, shipped_integer_hs,
                                    to_tensor, y_substream_regions)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", type=int, default=1, help="shipped teacher (default 1)")
    p.add_argument("--tiles", default="shipped", metavar="TILE,HALO",
                   help="tile geometry in latents (default: the shipped decoder package's, 32,2)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="images (default Kodak)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--repeat", type=int, default=5, help="decode runs per setting; the best counts (default 5)")


def best_of(repeat: int, fn, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def two_core_time(seconds: list[float]) -> float:
    """Longest core's total when jobs are dealt, longest first, to the less loaded of two cores."""
    cores = [0.0, 0.0]
    for t in sorted(seconds, reverse=True):
        cores[cores.index(min(cores))] += t
    return max(cores)


def run(args) -> int:
    if args.repeat < 1:
        raise LicError("--repeat must be at least 1")
    tiles = tile_geometry(args.tiles, 3 if args.tiles == "shipped" else args.quality)
    teacher = load_default(args.quality)
    has_integer = "integer_hs" in shipped_entry(args.quality)
    em = EntropyModels(teacher, shipped_integer_hs(args.quality) if has_integer else None)
    m = teacher.model
    _, y_table = cdf_tables(m)
    threads = (1, 2)
    rows = []
    for name, rgb in tqdm(load_images(first_images(args.data, args.limit)), desc="encode v2 + v3, decode y",
                          unit="img", file=sys.stderr):
        with torch.inference_mode():
            y = m.g_a(pad_replicate(to_tensor(rgb)))
            z = m.h_a(torch.abs(y))
            z_strings = m.entropy_bottleneck.compress(z)
            indexes = scale_indexes(em, m.entropy_bottleneck.decompress(z_strings, z.shape[-2:]))
            y_streams = {v: [m.gaussian_conditional.compress(y[:, :, r, c], indexes[:, :, r, c])[0]
                             for r, c in y_substream_regions(t, *y.shape[-2:])]
                         for v, t in ((FORMAT_V2, None), (FORMAT_V3, tiles))}
        h, w = rgb.shape[:2]
        files = {v: LicFile(version=v, fingerprint=em.fingerprint, height=h, width=w, streams=[z_strings[0]] + s,
                            tiles=tiles if v == FORMAT_V3 else None) for v, s in y_streams.items()}
        idx = indexes[0].numpy().astype(np.int32)
        t_v2 = best_of(args.repeat, lambda: decode_y(y_table, files[FORMAT_V2], idx))
        t_v3 = {n: best_of(args.repeat, lambda: decode_y(y_table, files[FORMAT_V3], idx, threads=n)) for n in threads}
        cpu_v2 = best_of(args.repeat, lambda: y_table.decode(files[FORMAT_V2].streams[1], idx), time.thread_time)
        cpu_v3 = []
        for k, (r, c) in enumerate(y_regions(files[FORMAT_V3], *idx.shape[1:])):
            sub = np.ascontiguousarray(idx[:, r, c])
            cpu_v3.append(best_of(args.repeat, lambda: y_table.decode(files[FORMAT_V3].streams[1 + k], sub),
                                  time.thread_time))
        ref = decode_y(y_table, files[FORMAT_V2], idx)
        if not np.array_equal(ref, decode_y(y_table, files[FORMAT_V3], idx, threads=2)):
            raise LicError(f"{name}: v3 substreams decode to other latents than v2: a bug")
        rows.append((name, len(files[FORMAT_V2].to_bytes()), len(files[FORMAT_V3].to_bytes()),
                     len(y_streams[FORMAT_V3]), t_v2, t_v3, cpu_v2, sum(cpu_v3), two_core_time(cpu_v3)))

    print(f"{'image':<14}{'v2 bytes':>9}{'v3 bytes':>9}{'tiles':>6}{'overhead':>10}{'y v2 ms':>9}"
          + "".join(f"{f'y v3 {n}T ms':>12}" for n in threads))
    for name, b2, b3, n_tiles, t2, t3, *_ in rows:
        print(f"{name:<14}{b2:>9}{b3:>9}{n_tiles:>6}{100 * (b3 - b2) / b2:>9.2f}%{1e3 * t2:>9.2f}"
              + "".join(f"{1e3 * t3[n]:>12.2f}" for n in threads))
    b2, b3 = sum(r[1] for r in rows), sum(r[2] for r in rows)
    source = "the shipped integer h_s" if has_integer else "the teacher's float h_s (no integer h_s shipped for it)"
    print(f"q{args.quality}, tile {tiles[0]} halo {tiles[1]}, {len(rows)} images, indexes from {source}: "
          f"v3 files are {100 * (b3 - b2) / b2:+.2f}% the size of v2 files ({b3 - b2:+d} bytes in {b2})")
    print(f"y decoding, mean per image, measured on this machine ({platform.machine()}, {os.cpu_count()} CPUs, "
          f"best of {args.repeat}): v2 one stream {1e3 * np.mean([r[4] for r in rows]):.2f} ms; v3 substreams "
          + ", ".join(f"{n} thread{'s' * (n > 1)} {1e3 * np.mean([r[5][n] for r in rows]):.2f} ms" for n in threads))
    print(f"y decoding CPU time, mean per image (thread_time, best of {args.repeat}): v2 one stream "
          f"{1e3 * np.mean([r[6] for r in rows]):.2f} ms; v3 substreams one core {1e3 * np.mean([r[7] for r in rows]):.2f}"
          f" ms, two cores (longest core's share) {1e3 * np.mean([r[8] for r in rows]):.2f} ms")
    return 0
