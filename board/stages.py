"""The ARM's half of decoding one .lic file, stage by stage, with nothing but numpy, Pillow and host/.

The same code runs on x86 (the reference), on Debian's armhf Python under qemu-user (`make
arm-check`: bit-exactness; `make board-rate`: instruction counts) and on a board (`lic board-rate
--on-board`: wall time). Stages, in pipeline order:

  parse       container, CRC                                   host/container.py
  rans_z      rANS decode of z                                 host/rans.py
  integer_hs  z -> scale-table indexes (native int32 kernel)   host/integer_hyper.py
  rans_y      rANS decode of y with those indexes              host/rans.py (via host/runtime.py)
  tiles       y_hat -> the fabric's input windows (with halo,  host/tiling.py
              int8 NHWC: what the input DMA reads)
  to_rgb8     the fabric's output windows -> the uint8 image   host/runtime.py
              (each core x output scale, clamp, round, in place)
  png         PNG encoding (Pillow, zlib)                      host/image_io.py

Synthesis itself is the fabric's (or onnxruntime's, which has no armhf build): here its window
outputs come in from elsewhere, e.g. x86's onnx backend, so the image is checked on given windows.
These are all the computing the ARM does for a frame with the pynq backend: its DMA buffers are
the windows' arrays (host/fabric.py), so there is no packing or copy beside them. Beside them per
frame: the buffers' cache clean and invalidate, the accelerator driver's register writes and its
sleeping wait, and the pipeline's thread hand-offs, which hls/estimates.py pipeline_rate models
(assumed) and `lic board-rate --on-board` times on a board.

    python -m board.stages check --package P --refs DIR --out DIR      (writes NAME.arm.npz and
                                                                              kernels.json: kernel_cases,
                                                                              RGB8_SCALES, window_cases)
    python -m board.stages count --package P --refs DIR --stage S --repeat N NAME
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from host.container import parse as parse_container
from host.decoder_package import DecoderPackage
from host.integer_hyper import IntegerHyperSynthesis, IntegerLayer
from host.runtime import StageTimes, _rgb8_table, decode_latents, latent_shape, windows_to_rgb8
from host.runtime import to_rgb8 as runtime_to_rgb8
from host.tiling import TilePlan, fill_windows, window_dtype
from lic.errors import LicError

STAGES = ("parse", "rans_z", "integer_hs", "rans_y", "tiles", "to_rgb8", "png")
ENTROPY = "entropy"  # rans_z + integer_hs + rans_y as the runtime runs them (any format version)


class Unavailable(Exception):
    """A stage that cannot run on this platform (the reason is the message)."""


def parse(data: bytes):
    return parse_container(data)


def rans_z(package, lic) -> np.ndarray:
    h, w = latent_shape(package, lic.height, lic.width)
    n = len(package.z_table)
    index = np.broadcast_to(np.arange(n, dtype=np.int32)[:, None, None], (n, h // 4, w // 4))
    try:
        return package.z_table.decode(lic.streams[0], index)
    except LicError as e:
        raise Unavailable(f"rANS decoder: {e}") from None


def integer_hs(package, z: np.ndarray, implementation: str | None = None) -> np.ndarray:
    return package.integer_hs.indexes(z, implementation)


def entropy(package, lic) -> np.ndarray:
    """y_hat exactly as the runtime decodes it (rans_z, integer_hs, rans_y, whatever the format)."""
    try:
        return decode_latents(lic, package, StageTimes())
    except LicError as e:
        if "rANS" in str(e) or "compressai" in str(e).lower():
            raise Unavailable(f"rANS decoder: {e}") from None
        raise


def tile_plan(package, y: np.ndarray):
    return TilePlan(y.shape[1], y.shape[2], package.tile, package.halo)


def tiles(package, y: np.ndarray) -> np.ndarray:
    """The windows the fabric is fed, [n, tile, tile, M] in the accelerator's stream layout."""
    plan = tile_plan(package, y)
    out = np.empty((len(plan.windows()), package.tile, package.tile, y.shape[0]), window_dtype(package.input_bits))
    return fill_windows(y, plan, out, package.input_bits)


def to_rgb8(package, lic, y_shape: tuple[int, int, int], fabric_windows: np.ndarray) -> np.ndarray:
    """The image from the fabric's outputs for each window [n, T, T, 3]: uint8 [height, width, 3]."""
    plan = tile_plan(package, np.empty(y_shape, np.int8))
    return windows_to_rgb8(fabric_windows, plan, package.upscale, lic.height, lic.width, package.output_scale)


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def run_all(package, data: bytes, fabric, refs: dict | None = None) -> tuple[dict, dict]:
    """Every stage once, each fed by this platform's previous stage where that ran, else by
    `refs` (x86's outputs). fabric(windows [n, t, t, M]) -> [n, T, T, 3] (a backend's run_windows),
    or None to take refs' fabric outputs. Returns (outputs, skipped: stage -> reason)."""
    out, skipped = {}, {}

    def here_or_refs(key: str, stage: str, run):
        try:
            out[key] = run()
        except Unavailable as e:
            skipped[stage] = str(e)
            return refs[key]
        return out[key]

    lic = parse(data)
    out["header"] = np.array([lic.version, lic.height, lic.width, len(lic.streams)], np.int64)
    z = here_or_refs("z", "rans_z", lambda: rans_z(package, lic))
    out["indexes"] = integer_hs(package, z)
    out["indexes_numpy"] = integer_hs(package, z, "numpy")
    y = here_or_refs("y", "rans_y", lambda: entropy(package, lic))
    out["tiles"] = tiles(package, y)
    if fabric is not None:
        out["fabric_windows"] = np.ascontiguousarray(fabric(out["tiles"]), dtype=window_dtype(package.output_bits))
    out["rgb"] = to_rgb8(package, lic, y.shape, out["fabric_windows"] if fabric is not None else refs["fabric_windows"])
    out["png"] = np.frombuffer(png(out["rgb"]), np.uint8)
    return out, skipped


def stage_runner(package, stage: str, data: bytes, refs: dict):
    """A no-argument callable running `stage` alone on inputs prepared from refs, for counting or
    timing one stage without the ones before it."""
    lic = parse(data)
    if stage == "parse":
        return lambda: parse(data)
    if stage == "rans_z":
        rans_z(package, lic)  # raises Unavailable before anything is counted
        return lambda: rans_z(package, lic)
    if stage in ("integer_hs", "integer_hs_numpy"):
        impl = "numpy" if stage.endswith("numpy") else None
        return lambda: integer_hs(package, refs["z"], impl)
    if stage == ENTROPY:
        entropy(package, lic)
        return lambda: entropy(package, lic)
    if stage == "tiles":
        return lambda: tiles(package, refs["y"])
    if stage == "to_rgb8":
        return lambda: to_rgb8(package, lic, refs["y"].shape, refs["fabric_windows"])
    if stage == "png":
        return lambda: png(refs["rgb"])
    raise ValueError(f"unknown stage {stage}")


def kernel_cases(seed: int = 4):
    """(what, integer h_s, z) cases the native h_s kernel must count exactly as numpy does, beyond
    what real files reach: threshold rows spaced every way a linear guess between their ends can
    get wrong (repeats, clusters, one huge gap, int32 extremes), probed on and next to every
    threshold, and random layers with odd channel counts and threshold rows of every length. On ARM
    these run the NEON paths (`make arm-check`); tests/test_board_kernels.py runs them on x86."""
    rng = np.random.default_rng(seed)
    n = 255
    rows = [np.full(n, 7), np.r_[np.full(n - 1, -50), 10 ** 6], np.r_[-10 ** 6, np.full(n - 1, 50)],
            np.sort(np.r_[rng.integers(-30, 30, n // 2), rng.integers(10 ** 5, 10 ** 5 + 40, n - n // 2)]),
            np.r_[np.arange(n - 1) * 3, 2 ** 31 - 3], np.r_[-(2 ** 31) + 1, np.arange(n - 1)],
            np.arange(n) * 1000, np.arange(n) * 1000 + rng.integers(-400, 400, n).cumsum() // 8,
            np.sort(rng.integers(-5000, 5000, n))]
    thresholds = np.stack([np.sort(r) for r in rows]).astype(np.int64)
    # one input channel through a 1x1 layer of weight 1: each accumulator is its input value
    weight = np.ones((len(rows), 1, 1, 1), np.int8)
    t = thresholds.ravel()
    probes = np.unique(np.clip(np.r_[t - 1, t, t + 1, rng.integers(-20000, 20000, 500)], -(2 ** 14), 2 ** 14 - 1))
    yield ("threshold rows of every spacing", IntegerHyperSynthesis([IntegerLayer(weight, thresholds, False)], 15, {}),
           probes.reshape(1, 1, -1))
    for n_thr in (0, 1, 2, 9, 63, 64, 255, 300):
        layers = [IntegerLayer(rng.integers(-127, 128, (5, 3, 3, 3)).astype(np.int8),
                               np.sort(rng.integers(-4000, 4000, (5, 15)), axis=1), False),
                  IntegerLayer(rng.integers(-127, 128, (37, 5, 1, 1)).astype(np.int8),
                               np.sort(rng.integers(-900, 900, (37, n_thr)), axis=1), True)]
        yield (f"odd widths, {n_thr} thresholds", IntegerHyperSynthesis(layers, 8, {}), rng.integers(-128, 128, (3, 4, 6)))


def check_kernels(cases=None) -> list[str]:
    """The cases (default kernel_cases()) where the native h_s and numpy disagree (empty: all exact)."""
    return [what for what, hs, z in (kernel_cases() if cases is None else cases)
            if not np.array_equal(hs.indexes(z, "native"), hs.indexes(z, "numpy"))]


RGB8_SCALES = [2.0 ** -k for k in range(9)]  # 2^0 .. 2^-7: C's integer path (NEON on ARM); 2^-8: its table


def rgb8_case(scale: float) -> str:
    return f"to_rgb8 of every int16 at scale {scale:g}"


def check_rgb8() -> list[str]:
    """The scales of RGB8_SCALES at which C's to_rgb8 and numpy's table differ on some int16 value."""
    every = np.arange(-2 ** 15, 2 ** 15, dtype=np.int16).reshape(1, 256, 256).repeat(3, axis=0)
    every[1] = every[1, ::-1]
    return [rgb8_case(scale) for scale in RGB8_SCALES
            if not np.array_equal(runtime_to_rgb8(every, scale),
                                  _rgb8_table(scale)[every.view(np.uint16)].transpose(1, 2, 0))]


def check_rgb8_windows() -> list[str]:
    """The scales of RGB8_SCALES at which the image from int8 windows (C, NEON on ARM) and numpy's
    table differ on some int8 value."""
    plan = TilePlan(8, 8, 8, 0)  # one window, all core: every value lands in the image
    every = np.tile(np.arange(-128, 128, dtype=np.int8), 192).reshape(1, 128, 128, 3)
    table = lambda scale, h, w: _rgb8_table(scale)[every[0, :h, :w].astype(np.int16).view(np.uint16)]
    return [f"image from int8 windows at scale {scale:g}" for scale in RGB8_SCALES
            if not all(np.array_equal(windows_to_rgb8(every, plan, 16, h, w, scale, threads), table(scale, h, w))
                       for h, w, threads in ((128, 128, 1), (127, 123, 3)))]  # 123: rows not a multiple of 16


def window_cases(seed: int = 5):
    """(what, y int32 [M, h, w], plan, bits) cases for fill_windows: int32 extremes and values on
    and next to the clip bounds, channel counts and tile widths that are not multiples of the NEON
    blocks (8), windows that overlap and frames smaller than the tile."""
    rng = np.random.default_rng(seed)
    edges = np.array([-2 ** 31, 2 ** 31 - 1, -129, -128, -127, -1, 0, 1, 126, 127, 128, 1000], np.int32)
    for m, h, w, tile, halo, bits in ((16, 20, 30, 16, 2, 8), (24, 13, 9, 8, 2, 8), (13, 9, 21, 9, 3, 8),
                                      (8, 5, 5, 8, 2, 8), (16, 17, 17, 16, 2, 6), (8, 16, 16, 8, 2, 12)):
        y = np.where(rng.random((m, h, w)) < 0.3, rng.choice(edges, (m, h, w)),
                     rng.integers(-300, 300, (m, h, w))).astype(np.int32)
        yield f"windows of {m}x{h}x{w} in {tile}-tiles, {bits} bits", y, TilePlan(h, w, tile, halo), bits


def check_windows(cases=None) -> list[str]:
    """The window_cases where fill_windows (C for int8, NEON on ARM) differs from its definition."""
    differ = []
    for what, y, plan, bits in (window_cases() if cases is None else cases):
        eh, ew = plan.extended
        padded = np.pad(y, ((0, 0), (0, eh - y.shape[1]), (0, ew - y.shape[2])))
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        want = np.stack([np.clip(padded[:, r.start:r.start + plan.tile, c.start:c.start + plan.tile], lo, hi)
                         .transpose(1, 2, 0) for r, c in plan.windows()])
        for threads in (1, 3):
            got = np.empty(want.shape, window_dtype(bits))
            if not np.array_equal(fill_windows(y, plan, got, bits, threads), want):
                differ.append(f"{what}, {threads} threads")
    return differ


def load_refs(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("check", "count"))
    p.add_argument("--package", type=Path, required=True)
    p.add_argument("--refs", type=Path, required=True, help="folder with NAME.lic and NAME.x86.npz")
    p.add_argument("--out", type=Path, help="check: folder for NAME.arm.npz")
    p.add_argument("--stage", help="count: which stage")
    p.add_argument("--repeat", type=int, default=1, help="count: how many times")
    p.add_argument("names", nargs="*")
    args = p.parse_intermixed_args(argv)

    package = DecoderPackage.load(args.package)
    names = args.names or sorted(f.stem for f in args.refs.glob("*.lic"))
    if args.mode == "count":
        data = (args.refs / f"{names[0]}.lic").read_bytes()
        try:
            run = stage_runner(package, args.stage, data, load_refs(args.refs / f"{names[0]}.x86.npz"))
        except Unavailable as e:
            print(f"unavailable: {e}")
            return 3
        for _ in range(args.repeat):
            run()
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    cases = list(kernel_cases())
    windows = list(window_cases())
    names_checked = ([what for what, _, _ in cases] + [rgb8_case(s) for s in RGB8_SCALES]
                     + [f"image from int8 windows at scale {s:g}" for s in RGB8_SCALES] + [w[0] for w in windows])
    differ = check_kernels(cases) + check_rgb8() + check_rgb8_windows() + check_windows(windows)
    (args.out / "kernels.json").write_text(json.dumps({"cases": names_checked, "differ": differ}) + "\n")
    for name in names:
        t = time.perf_counter()
        out, skipped = run_all(package, (args.refs / f"{name}.lic").read_bytes(), None,
                               load_refs(args.refs / f"{name}.x86.npz"))
        out["skipped"] = np.frombuffer("\n".join(f"{k}: {v}" for k, v in skipped.items()).encode(), np.uint8)
        out["platform"] = np.frombuffer(f"{platform.machine()} python {platform.python_version()} numpy "
                                        f"{np.__version__} h_s {package.integer_hs.implementation}".encode(), np.uint8)
        np.savez(args.out / f"{name}.arm.npz", **out)
        print(f"{name}: {platform.machine()}, {time.perf_counter() - t:.1f} s (emulated: says nothing about a board)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
