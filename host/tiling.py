"""Square latent tiles with a halo, so a fixed-shape accelerator decodes any frame size exactly.

Every window is `tile` latents square and lies inside the frame (windows at the right and bottom
edges are shifted inward and overlap their neighbours). From each window only its *core* is kept:
the part at least `halo` latents from every window edge that is not also a frame edge. When `halo`
covers the network's receptive field, each kept output pixel sees exactly the inputs, and the same
zero padding at frame edges, that it sees in a whole-frame decode, so the stitched image equals the
whole-frame one bit for bit (tests/test_host_runtime.py checks this on real models).

A frame smaller than the tile along an axis is zero-extended to it; that axis is then decoded as
one window, not bit-identical to a whole-frame decode near the extended edge (the padding enters
the network as latents, not as zeros between layers), and `plan` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from host.native import library
from host.parallel import each, row_bands


# Format v3 splits y into substreams the board's cores decode at once: at least one per core of the
# boards with most (ZCU104's and KV260's four Cortex-A53s), so that y, like every other ARM stage, is
# shared by all of them; and balanced, where one per window is not (768x512's two 32-latent windows have
# cores 30 and 18 latents wide: one core would decode 62% of y).
MIN_Y_SUBSTREAMS = 4
MAX_Y_SUBSTREAMS = 254  # the header's stream count is one byte, and z takes one


@dataclass(frozen=True)
class Window:
    start: int      # first latent of the window in the (extended) frame
    keep_from: int  # core = [keep_from, keep_to) in frame latents
    keep_to: int


def axis_windows(n: int, tile: int, halo: int) -> list[Window]:
    """Windows covering [0, n) along one axis; n >= tile."""
    if tile - 2 * halo < 1:
        raise ValueError(f"tile {tile} leaves no core inside a halo of {halo}")
    if n < tile:
        raise ValueError(f"axis of {n} latents is smaller than the tile ({tile})")
    out, a = [], 0
    while a < n:
        start = max(0, min(a - halo, n - tile))
        end = start + tile
        b = n if end >= n else end - halo
        out.append(Window(start, a, b))
        a = b
    return out


@dataclass(frozen=True)
class TilePlan:
    height: int   # latent frame size
    width: int
    tile: int
    halo: int

    @property
    def extended(self) -> tuple[int, int]:
        return max(self.height, self.tile), max(self.width, self.tile)

    @property
    def exact(self) -> bool:
        """False when the frame had to be zero-extended to the tile (see module doc)."""
        return self.height >= self.tile and self.width >= self.tile

    def windows(self) -> list[tuple[Window, Window]]:
        eh, ew = self.extended
        return [(r, c) for r in axis_windows(eh, self.tile, self.halo) for c in axis_windows(ew, self.tile, self.halo)]

    def window_count(self) -> int:
        """len(self.windows()) without listing them: a crafted header may claim millions."""
        eh, ew = self.extended
        return len(axis_windows(eh, self.tile, self.halo)) * len(axis_windows(ew, self.tile, self.halo))

    def cores(self) -> list[tuple[slice, slice]]:
        """Each window's core within the frame (rows, cols), in window order: a partition of the frame."""
        return [(slice(r.keep_from, min(r.keep_to, self.height)), slice(c.keep_from, min(c.keep_to, self.width)))
                for r, c in self.windows()]

    def max_bands(self) -> int:
        """The most bands of rows every core can be split into (each band at least one row)."""
        return min(rows.stop - rows.start for rows, _ in self.cores())

    def substreams(self, bands: int) -> list[tuple[slice, slice]]:
        """The regions format v3 codes as separate y substreams, in stream order: each core in window
        order, split into `bands` bands of rows, top to bottom (band j of a core of r rows holds its
        rows [r*j//bands, r*(j+1)//bands)). A partition of the frame."""
        if not 1 <= bands <= self.max_bands():
            raise ValueError(f"{bands} bands of rows: the cores have {self.max_bands()} rows at least")
        out = []
        for rows, cols in self.cores():
            r = rows.stop - rows.start
            out += [(slice(rows.start + r * j // bands, rows.start + r * (j + 1) // bands), cols) for j in range(bands)]
        return out

    def encoder_bands(self) -> int:
        """How many bands of rows an encoder splits each core into: the fewest that give every core
        of the most-core board (MIN_Y_SUBSTREAMS) a substream, within the format's 254."""
        n = len(self.cores())
        want = -(-MIN_Y_SUBSTREAMS // n)
        return max(1, min(want, self.max_bands(), MAX_Y_SUBSTREAMS // n))


def window_dtype(bits: int) -> type:
    """The integer type of the accelerator's streams for `bits`-bit values: FINN packs a byte-aligned
    INT8 stream as the plain values, so 8-bit windows are int8 arrays the DMA moves as they are."""
    return np.int8 if bits <= 8 else np.int16


def window_bands(n: int, rows: int, threads: int) -> list[tuple[int, int, int]]:
    """(window, first row, stop row) items that give `threads` threads work even when a frame has
    fewer windows than threads (768x512 has two 32-latent windows; ZCU104 and KV260 have four cores)."""
    return [(k, a, b) for k in range(n) for a, b in row_bands(rows, -(-threads // n))]


def fill_windows(y: np.ndarray, plan: TilePlan, out: np.ndarray, bits: int, threads: int = 1) -> np.ndarray:
    """y_hat [M, h, w] -> out [n, tile, tile, M], the windows the fabric is fed in plan.windows()
    order, in the accelerator's stream layout (NHWC) and clipped to INT<bits>: the student's input
    quantiser, which the FINN build removes (hls/transforms.py). `out` is where the fabric reads
    (on a board, the input DMA buffer); in C (host/csrc/windows.c) for int8, numpy otherwise."""
    m, h, w = y.shape
    eh, ew = plan.extended
    if (eh, ew) != (h, w):
        y = np.pad(y, ((0, 0), (0, eh - h), (0, ew - w)))
    y = np.ascontiguousarray(y, dtype=np.int32)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    t, windows = plan.tile, plan.windows()
    if out.shape != (len(windows), t, t, m) or not out.flags.c_contiguous:
        raise ValueError(f"windows buffer {out.shape} is not a C-contiguous {(len(windows), t, t, m)}")
    lib = library() if out.dtype == np.int8 else None

    def one(item: tuple[int, int, int]) -> None:
        k, a, b = item
        r, c = windows[k]
        src = y[:, r.start + a:r.start + b, c.start:c.start + t]
        if lib is not None:
            lib.lic_window_hwc8(src.ctypes.data, m, y.strides[0] // 4, y.strides[1] // 4, b - a, t, lo, hi,
                                out[k, a:b].ctypes.data)
        else:
            out[k, a:b] = np.clip(src, lo, hi).transpose(1, 2, 0)

    each(one, window_bands(len(windows), t, threads), threads)
    return out
