"""The board's decoder: .lic bytes -> RGB pixels, with torch nowhere on the path.

    parse .lic -> rANS-decode z -> integer h_s -> scale indexes -> rANS-decode y -> y_hat
    -> student synthesis on a backend (whole frame, or square tiles with halo) -> integer pixels
    -> dequantise (x output scale), clamp, crop to the image size

Each stage is timed (StageTimes), which is how the ARM-side cost is compared with the fabric's.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from host.backends import Backend
from host.container import FORMAT_V1, FORMAT_V2, FORMAT_V3, LicFile, parse, read_lic
from host.decoder_package import DecoderPackage
from host.geometry import DEFAULT_MAX_PIXELS, hyperprior_geometry
from host.native import library
from host.parallel import each, row_bands
from host.tiling import TilePlan, fill_windows, window_bands, window_dtype
from lic.errors import LicError


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - t0
        return now

    def __iadd__(self, other: "StageTimes") -> "StageTimes":
        for k, v in other.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        return self


STAGES = ("parse", "rans_z", "integer_hs", "rans_y", "synthesis", "dequantise")


def check_file(lic: LicFile, package: DecoderPackage, name: str) -> None:
    if lic.version == FORMAT_V1:
        raise LicError(f"{name} is format version 1 (the teacher's float h_s), which only the teacher decodes "
                       f"reproducibly: use --decoder teacher, or re-encode with `lic encode --integer-hs`")
    if lic.version not in (FORMAT_V2, FORMAT_V3):
        raise LicError(f"{name}: format version {lic.version} is not decodable by this runtime")
    if not package.decodes(lic.fingerprint):
        raise LicError(f"{name} needs decoder {lic.fingerprint.hex()}, but decoder package {package.name} decodes "
                       f"{package.file_fingerprint.hex()}: use the package of that file's rate point (`make packages`)")


def y_regions(lic: LicFile, h: int, w: int, name: str = "input") -> list[tuple[slice, slice]]:
    """The latent regions [rows, cols] that streams 1.. code, in stream order: the whole frame in
    versions 1 and 2; in version 3, each core of the header's tile geometry in bands of rows, as many
    bands per core as the stream count says (one in files written before Nov 2026)."""
    if lic.version < FORMAT_V3:
        if len(lic.streams) != 2:
            raise LicError(f"{name}: expected 2 streams, found {len(lic.streams)}")
        return [(slice(0, h), slice(0, w))]
    plan = TilePlan(h, w, *lic.tiles)
    n = plan.window_count()
    bands, left = divmod(len(lic.streams) - 1, n)
    # max_bands lists the windows, so it comes last: reached only when n divides the stream count (<= 254)
    if bands < 1 or left or bands > plan.max_bands():
        raise LicError(f"{name}: {len(lic.streams)} streams do not fit its tile geometry ({n} tiles: 1 + {n} "
                       f"streams, or 1 + {n} x the bands of rows per tile, each band at least one row)")
    return plan.substreams(bands)


def decode_y(table, lic: LicFile, indexes: np.ndarray, name: str = "input", threads: int = 1) -> np.ndarray:
    """Entropy-decode y [M, h, w] from streams 1.. with its scale indexes; version-3 substreams are
    independent, so `threads` decode them at once (the C decoder releases the GIL)."""
    regions = y_regions(lic, *indexes.shape[1:], name)
    if len(regions) == 1:
        return table.decode(lic.streams[1], indexes, f"{name}: y stream")
    y = np.empty(indexes.shape, dtype=np.int32)

    def one(k: int) -> None:
        rows, cols = regions[k]
        table.decode(lic.streams[1 + k], indexes[:, rows, cols], f"{name}: y substream {k}", out=y[:, rows, cols])

    each(one, range(len(regions)), threads)
    return y


def latent_shape(package: DecoderPackage, height: int, width: int) -> tuple[int, int]:
    m = package.spatial_multiple
    hp, wp = -(-height // m) * m, -(-width // m) * m
    return hp // package.upscale, wp // package.upscale


def decode_latents(lic: LicFile, package: DecoderPackage, times: StageTimes, name: str = "input",
                   threads: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """y_hat as int32 [M, h, w], entropy-decoded exactly as the encoder coded it. The header, the
    stream count and lengths and the package's geometry are checked against each other first."""
    check_file(lic, package, name)
    geo = hyperprior_geometry(lic, z_channels=len(package.z_table), y_channels=package.latent_channels,
                              spatial_multiple=package.spatial_multiple, max_pixels=max_pixels, name=name)
    y_regions(lic, *geo.y_shape[1:], name)
    t = time.perf_counter()
    z = package.z_table.decode_per_row(lic.streams[0], geo.z_shape, f"{name}: z stream")
    t = times.add("rans_z", t)
    indexes = package.integer_hs.indexes(z, threads=threads)
    if indexes.shape != geo.y_shape:
        raise LicError(f"{name}: integer h_s gives {indexes.shape}, expected {geo.y_shape}")
    t = times.add("integer_hs", t)
    y = decode_y(package.y_table, lic, indexes, name, threads)
    times.add("rans_y", t)
    return y


def _pow2_exponent(scale: float, accepts) -> int | None:
    """k where scale = 2^-k and the C function `accepts(k)` (asked with zero rows) takes it."""
    mantissa, exponent = math.frexp(float(scale))
    return 1 - exponent if mantissa == 0.5 and accepts(1 - exponent) == 0 else None


def to_rgb8(pixels: np.ndarray, scale: float, threads: int = 1) -> np.ndarray:
    """Integer pixels [3, H, W] -> uint8 HxWx3, with the same float32 ops as the torch decoders:
    x = int * scale, clamp to [0, 1], x 255, round half to even. In C, for the student's
    power-of-two output scale in integer arithmetic proven equal to that (host/csrc/rgb8.c; NEON on
    the board), else through a 64 Ki-entry table of it, `threads` taking a band of rows each; in
    numpy through the table."""
    if pixels.dtype != np.int16:
        pixels = pixels.astype(np.int16)  # every backend returns int16; the student's outputs fit it
    lib = library()
    if lib is None:
        return np.ascontiguousarray(_rgb8_table(float(scale))[pixels.view(np.uint16)].transpose(1, 2, 0))
    if pixels.strides[2] != 2:
        pixels = np.ascontiguousarray(pixels)
    _, h, w = pixels.shape
    out = np.empty((h, w, 3), np.uint8)
    strides = (pixels.strides[0] // 2, pixels.strides[1] // 2)
    k = _pow2_exponent(scale, lambda k: lib.lic_rgb8_pow2(pixels.ctypes.data, 0, w, *strides, k, out))
    table = None if k is not None else _rgb8_table(float(scale))

    def band(rows: tuple[int, int]) -> None:
        y0, y1 = rows
        src = pixels.ctypes.data + y0 * pixels.strides[1]
        if k is not None:
            lib.lic_rgb8_pow2(src, y1 - y0, w, *strides, k, out[y0:y1])
        else:
            lib.lic_rgb8(src, y1 - y0, w, *strides, table, out[y0:y1])

    each(band, row_bands(h, threads), threads)
    return out


def windows_to_rgb8(windows_out: np.ndarray, plan: TilePlan, upscale: int, height: int, width: int, scale: float,
                    threads: int = 1) -> np.ndarray:
    """The fabric's outputs for a frame's windows [n, T, T, 3] (stream layout, integers) -> the image,
    uint8 [height, width, 3]: each window's core, cropped to the image, through to_rgb8's mapping,
    in one pass (stitching and conversion together, no int16 frame between them). In C for int8
    outputs and the power-of-two scale (host/csrc/rgb8.c), through the table otherwise."""
    s, windows = upscale, plan.windows()
    out = np.empty((height, width, 3), np.uint8)
    lib = library() if windows_out.dtype == np.int8 and windows_out.strides[2:] == (3, 1) else None
    k = None if lib is None else _pow2_exponent(
        scale, lambda k: lib.lic_rgb8_pow2_hwc8(windows_out.ctypes.data, 0, 3, 0, k, out.ctypes.data, 0))
    table = None if k is not None else _rgb8_table(float(scale))
    cores = [(r.keep_from * s, min(r.keep_to * s, height), c.keep_from * s, min(c.keep_to * s, width))
             for r, c in windows]

    def one(item: tuple[int, int, int]) -> None:
        n, a, b = item
        (r, c), (y0, y1, x0, x1) = windows[n], cores[n]
        rows = slice(y0 + a, min(y0 + b, y1))
        if rows.stop <= rows.start or x1 <= x0:
            return
        src = windows_out[n, rows.start - r.start * s:rows.stop - r.start * s, x0 - c.start * s:x1 - c.start * s]
        dst = out[rows, x0:x1]
        if k is not None:
            lib.lic_rgb8_pow2_hwc8(src.ctypes.data, src.shape[0], 3 * (x1 - x0), src.strides[0], k,
                                   dst.ctypes.data, dst.strides[0])
        else:
            dst[...] = table[src.astype(np.int16).view(np.uint16)]

    core_rows = max(y1 - y0 for y0, y1, _, _ in cores)
    each(one, window_bands(len(windows), core_rows, threads), threads)
    return out


@lru_cache(maxsize=4)
def _rgb8_table(scale: float) -> np.ndarray:
    """table[v as uint16 bit pattern] = to_rgb8 of the int16 value v."""
    values = np.arange(2 ** 16, dtype=np.uint16).view(np.int16)
    x = values.astype(np.float32) * np.float32(scale)
    return np.rint(np.clip(x, 0, 1) * np.float32(255)).astype(np.uint8)


class HostDecoder:
    """One decoder package on one backend. tile=None: whole frame if the backend takes any shape,
    else the backend's tile; an int forces that tile size (it must equal a fixed backend's).
    threads: threads for the integer h_s, a version-3 file's y substreams and the windows in and
    out; by default one per CPU core (PYNQ-Z2's A9: two; ZCU104's and KV260's A53: four), as `lic
    board-rate` assumes."""

    def __init__(self, package: DecoderPackage, backend: Backend, tile: int | None = None, threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        if backend.tile is not None and tile not in (None, backend.tile):
            raise LicError(f"the {backend.name} backend is built for {backend.tile}x{backend.tile} latent tiles, "
                           f"not {tile}")
        self.package, self.backend = package, backend
        self.trace: list[tuple[str, str, float, float]] | None = None  # (stage, file, start, end), when a list
        self.threads, self.max_pixels = threads or os.cpu_count() or 1, max_pixels
        self.tile = tile if tile is not None else backend.tile
        if self.tile is not None and self.tile - 2 * package.halo < 1:
            raise LicError(f"tile {self.tile} is too small for this student's halo of {package.halo} latents "
                           f"(needs at least {2 * package.halo + 1})")

    def tile_plan(self, lic: LicFile) -> TilePlan | None:
        if self.tile is None:
            return None
        h, w = latent_shape(self.package, lic.height, lic.width)
        return TilePlan(h, w, self.tile, self.package.halo)

    def entropy_decode(self, data: bytes | Path, name: str = "input") -> tuple[LicFile, np.ndarray, StageTimes]:
        """The ARM's share: (read,) parse and rANS/integer-h_s decode to y_hat."""
        times = StageTimes()
        t = time.perf_counter()
        if isinstance(data, Path):
            data = read_lic(data)
        lic = parse(data, name)
        times.add("parse", t)
        return lic, decode_latents(lic, self.package, times, name, self.threads, self.max_pixels), times

    def synthesise(self, lic: LicFile, y: np.ndarray, times: StageTimes) -> np.ndarray:
        """The fabric's share (or its stand-in): y_hat -> uint8 image, whole frame when tile is None,
        else in tile x tile windows with the package's halo."""
        package, t = self.package, time.perf_counter()
        if self.tile is None:
            pixels = self.backend.run(y[None])[0]
            t = times.add("synthesis", t)
            rgb = to_rgb8(pixels[:, :lic.height, :lic.width], package.output_scale, self.threads)
        else:
            # the windows in the accelerator's stream layout, written where it reads them; its outputs
            # go straight into their place in the image (`threads` share the copies in and out)
            plan = TilePlan(y.shape[1], y.shape[2], self.tile, package.halo)
            x = self.backend.input_windows(len(plan.windows()), self.tile, y.shape[0], window_dtype(package.input_bits))
            fill_windows(y, plan, x, package.input_bits, self.threads)
            out = np.ascontiguousarray(self.backend.run_windows(x), dtype=window_dtype(package.output_bits))
            t = times.add("synthesis", t)
            for k, v in self.backend.last_timings.items():  # parts of synthesis, timed apart (pynq: cache)
                times.seconds[k] = times.seconds.get(k, 0.0) + v
            rgb = windows_to_rgb8(out, plan, package.upscale, lic.height, lic.width, package.output_scale, self.threads)
        times.add("dequantise", t)
        return rgb

    def decode(self, data: bytes, name: str = "input") -> tuple[np.ndarray, StageTimes]:
        lic, y, times = self.entropy_decode(data, name)
        return self.synthesise(lic, y, times), times

    def decode_stream(self, items: Iterable[tuple[str, bytes | Path]]
                      ) -> Iterator[tuple[str, np.ndarray | LicError, StageTimes | None]]:
        """Decode many files, in order, as a pipeline. A file that fails yields its LicError in
        place of the image (and None times); the others still decode.

        Tiled (the fabric backends, or --tile): four stages on three threads, each frame's windows in
        one of two buffer sets (on a board, DMA buffers):
          entropy thread   parse, rANS z, integer h_s, rANS y of frame i+2
          this thread      frame i+1's windows into the free buffer set and its cache clean; then,
                           once the accelerator has finished frame i (a sleeping wait), its start
          accelerator      frame i+1 (the fabric; onnxruntime / FINN's executor on a worker thread)
          output thread    frame i's output windows (cache invalidate) -> the RGB image; then its
                           buffer set is free again
        The C stages release the GIL and the wait sleeps, so the board's two cores share all three
        ARM threads. Whole-frame backends: the entropy decoding of file i+1 beside the synthesis of i."""
        if self.tile is None:
            yield from self._decode_stream_whole(items)
            return
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor
        from queue import Queue

        items = iter(items)
        package, sets = self.package, self.backend.buffer_sets
        with ThreadPoolExecutor(1, thread_name_prefix="lic-entropy") as entropy, \
                ThreadPoolExecutor(1, thread_name_prefix="lic-output") as output:
            def submit():
                nxt = next(items, None)
                return None if nxt is None else (nxt[0], entropy.submit(self._traced, "entropy", nxt[0],
                                                                         self.entropy_decode, nxt[1], nxt[0]))

            ahead = deque(x for x in (submit(), submit()) if x is not None)  # two files' entropy decoding queued
            in_flight: deque = deque()  # (name, Future of (rgb, times))
            slots, shape, free = None, None, Queue()

            def finish(name, job, plan, lic, times, t, k):
                try:
                    out = job.result()  # done, and the output buffer invalidated
                    t = t0 = times.add("synthesis", t)
                    for key, v in job.timings.items():  # parts of synthesis, timed apart (pynq: cache)
                        times.seconds[key] = times.seconds.get(key, 0.0) + v
                    rgb = windows_to_rgb8(np.asarray(out, dtype=window_dtype(package.output_bits)), plan,
                                          package.upscale, lic.height, lic.width, package.output_scale, self.threads)
                    end = times.add("dequantise", t)
                    if self.trace is not None:
                        self.trace += [("fabric", name, job.started_at, job.done_at), ("to_rgb8", name, t0, end)]
                    return rgb, times
                finally:
                    free.put(k)

            while ahead:
                name, future = ahead.popleft()
                nxt = submit()
                if nxt is not None:
                    ahead.append(nxt)
                try:
                    lic, y, times = future.result()
                    plan = TilePlan(y.shape[1], y.shape[2], self.tile, package.halo)
                    key = (len(plan.windows()), y.shape[0])
                    if key != shape:
                        # another frame size: the buffers are reallocated once nothing uses them
                        while in_flight:
                            yield self._result(*in_flight.popleft())
                        slots = self.backend.window_slots(key[0], self.tile, key[1], window_dtype(package.input_bits),
                                                          sets)
                        shape, free = key, Queue()
                        for k in range(len(slots)):
                            free.put(k)
                    k = free.get()  # a buffer set whose frame has been turned into its image
                    t = time.perf_counter()
                    fill_windows(y, plan, slots[k], package.input_bits, self.threads)
                    if self.trace is not None:
                        self.trace.append(("tiles", name, t, time.perf_counter()))
                    try:
                        job = self.backend.start_windows(slots[k])
                    except BaseException:
                        free.put(k)
                        raise
                    in_flight.append((name, output.submit(finish, name, job, plan, lic, times, t, k)))
                except LicError as e:
                    failed: Future = Future()
                    failed.set_exception(e)
                    in_flight.append((name, failed))
                # hand back what is finished; hold at most two frames behind this one
                while in_flight and (in_flight[0][1].done() or len(in_flight) > sets):
                    yield self._result(*in_flight.popleft())
            while in_flight:
                yield self._result(*in_flight.popleft())

    def _traced(self, stage: str, name: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if self.trace is not None:
                self.trace.append((stage, name, t, time.perf_counter()))

    @staticmethod
    def _result(name: str, future) -> tuple[str, np.ndarray | LicError, StageTimes | None]:
        try:
            rgb, times = future.result()
            return name, rgb, times
        except LicError as e:
            return name, e, None

    def _decode_stream_whole(self, items):
        from concurrent.futures import ThreadPoolExecutor

        items = iter(items)
        with ThreadPoolExecutor(max_workers=1) as pool:
            def submit():
                nxt = next(items, None)
                return None if nxt is None else (nxt[0], pool.submit(self.entropy_decode, nxt[1], nxt[0]))
            pending = submit()
            while pending is not None:
                name, future = pending
                pending = submit()
                try:
                    lic, y, times = future.result()
                    yield name, self.synthesise(lic, y, times), times
                except LicError as e:
                    yield name, e, None
