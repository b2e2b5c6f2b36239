"""`lic bench entropy`: the project's C rANS decoder (host/rans.py) against CompressAI's, on the same streams.

Images (Kodak by default) are encoded once with the shipped q3 teacher + integer h_s (format v2, the
files a board decodes) and cached. For each file both decoders decode the z and the y stream with the
same indexes (the integer h_s runs once, untimed), and their symbols must be identical. CompressAI's
decoder is called the way the host runtime called it before the C decoder: indexes as a Python list,
CDF tables converted to lists once. Times are the best of --repeat runs, one thread: wall time, and
CPU time (thread_time), which other processes on a shared machine do not inflate.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import platform
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.evaluate import DEFAULT_DATA, first_images, load_images
from host.container import parse
from host.decode_cli import SHIPPED_PACKAGES
from host.decoder_package import DecoderPackage
from host.image_io import write_atomic
from host.runtime import latent_shape
from lic.errors import LicError
from training.teacher_codec import encode, package_encoder

DEFAULT_CACHE = Path("build/bench/entropy")


@lru_cache(maxsize=1)
def compressai_ans():
    """CompressAI's compiled rANS extension, loaded from its file without running compressai/__init__
    (which imports torch)."""
    name = "compressai.ans"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        raise LicError("CompressAI is not installed (`pip install --no-deps compressai==1.2.8`); "
                       "its rANS decoder is the reference this benchmark compares against")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("ans*" + suffix)):
            loader = importlib.machinery.ExtensionFileLoader(name, str(path))
            module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
            loader.exec_module(module)
            return module
    raise LicError(f"compressai is installed but has no compiled rANS extension (ans*{suffix})")


class CompressAIDecoder:
    """CompressAI's RansDecoder.decode_with_indexes over one CdfTable's arrays."""

    def __init__(self, table):
        self.lists = (table.cdf.tolist(), table.cdf_length.tolist(), table.offset.tolist())

    def decode(self, stream: bytes, indexes: np.ndarray) -> np.ndarray:
        values = compressai_ans().RansDecoder().decode_with_indexes(
            stream, indexes.ravel().astype(np.int32).tolist(), *self.lists)
        return np.asarray(values, dtype=np.int32).reshape(indexes.shape)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="images (default Kodak)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--package", type=Path, default=SHIPPED_PACKAGES / "q3",
                   help="decoder package whose tables and integer h_s decode the files (default: shipped q3)")
    p.add_argument("--repeat", type=int, default=5, help="runs per decoder and file; the best counts (default 5)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                   help=f"where the encoded .lic files are kept between runs (default {DEFAULT_CACHE})")


def encoded_files(package, data: Path, limit: int | None, cache: Path) -> dict[str, bytes]:
    """name -> .lic v2 bytes, encoded with the models that wrote the package's files (cached)."""
    folder = cache / package.file_fingerprint.hex()
    paths = first_images(data, limit)
    missing = [p for p in paths if not (folder / (Path(p).stem + ".lic")).is_file()]
    if missing:
        models = package_encoder(package)
        folder.mkdir(parents=True, exist_ok=True)
        for name, rgb in tqdm(load_images(missing), desc="encode (teacher)", unit="img", file=sys.stderr):
            write_atomic(folder / (Path(name).stem + ".lic"), encode(models, rgb))
    return {Path(p).name: (folder / (Path(p).stem + ".lic")).read_bytes() for p in paths}


def stream_jobs(package, data: bytes, name: str) -> list[tuple[str, bytes, np.ndarray]]:
    """[("z", stream, indexes), ("y", stream, indexes)] of a v2 file; the integer h_s runs here, once."""
    lic = parse(data, name)
    h, w = latent_shape(package, lic.height, lic.width)
    n_z = len(package.z_table)
    z_index = np.ascontiguousarray(np.broadcast_to(np.arange(n_z, dtype=np.int32)[:, None, None], (n_z, h // 4, w // 4)))
    y_index = package.integer_hs.indexes(package.z_table.decode(lic.streams[0], z_index)).astype(np.int32)
    return [("z", lic.streams[0], z_index), ("y", lic.streams[1], y_index)]


def best_of(repeat: int, fn) -> tuple[float, float, object]:
    """(best wall time, best CPU time, last result) over `repeat` runs."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.thread_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.thread_time() - c)
    return wall, cpu, out


def run(args) -> int:
    if args.repeat < 1:
        raise LicError("--repeat must be at least 1")
    package = DecoderPackage.load(args.package)
    files = encoded_files(package, args.data, args.limit, args.cache)
    ours = {"z": package.z_table, "y": package.y_table}
    theirs = {k: CompressAIDecoder(t) for k, t in ours.items()}
    rows = []
    for name, data in tqdm(files.items(), desc="decode z + y, both decoders", unit="img", file=sys.stderr):
        jobs = stream_jobs(package, data, name)

        def decode_all(decoders):
            return [decoders[k].decode(s, i) for k, s, i in jobs]

        t_c, cpu_c, out_c = best_of(args.repeat, lambda: decode_all(ours))
        t_ref, cpu_ref, out_ref = best_of(args.repeat, lambda: decode_all(theirs))
        if not all(np.array_equal(a, b) for a, b in zip(out_c, out_ref)):
            raise LicError(f"{name}: the C decoder and CompressAI's disagree: a bug in host/csrc/lic_rans.c")
        rows.append((name, len(data), t_c, t_ref, cpu_c, cpu_ref))

    print(f"{'image':<14}{'bytes':>8}{'C ms':>9}{'CompressAI ms':>15}{'ratio':>8}")
    for name, size, t_c, t_ref, *_ in rows:
        print(f"{name:<14}{size:>8}{1e3 * t_c:>9.2f}{1e3 * t_ref:>15.2f}{t_ref / t_c:>7.1f}x")
    mean_c = float(np.mean([r[2] for r in rows]))
    mean_ref = float(np.mean([r[3] for r in rows]))
    print(f"entropy decoding (z + y), mean of {len(rows)} images, measured on this machine "
          f"({platform.machine()}, 1 thread, best of {args.repeat}): C {1e3 * mean_c:.2f} ms/image, "
          f"CompressAI {1e3 * mean_ref:.2f} ms/image, speed ratio {mean_ref / mean_c:.1f}x; symbols identical")
    cpu_c, cpu_ref = float(np.mean([r[4] for r in rows])), float(np.mean([r[5] for r in rows]))
    print(f"CPU time (thread_time, best of {args.repeat}): C {1e3 * cpu_c:.2f} ms/image, CompressAI "
          f"{1e3 * cpu_ref:.2f} ms/image, speed ratio {cpu_ref / cpu_c:.1f}x")
    return 0
