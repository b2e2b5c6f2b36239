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

from host.parallel import each


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

    def cores(self) -> list[tuple[slice, slice]]:
        """Each window's core within the frame (rows, cols), in window order: a partition of the
        frame, the regions that format v3 codes as separate substreams."""
        return [(slice(r.keep_from, min(r.keep_to, self.height)), slice(c.keep_from, min(c.keep_to, self.width)))
                for r, c in self.windows()]


def tile_windows(y: np.ndarray, plan: TilePlan, threads: int = 1) -> np.ndarray:
    """y [1, M, h, w] -> the windows the fabric is fed, [n, M, tile, tile] in plan.windows() order."""
    _, m, h, w = y.shape
    eh, ew = plan.extended
    if (eh, ew) != (h, w):
        y = np.pad(y, ((0, 0), (0, 0), (0, eh - h), (0, ew - w)))
    t, windows = plan.tile, plan.windows()
    tiles = np.empty((len(windows), m, t, t), y.dtype)

    def copy(k: int) -> None:
        r, c = windows[k]
        tiles[k] = y[0, :, r.start:r.start + t, c.start:c.start + t]

    each(copy, range(len(windows)), threads)
    return tiles


def stitch_tiles(tiles_out: np.ndarray, plan: TilePlan, upscale: int, h: int, w: int,
                 threads: int = 1) -> np.ndarray:
    """The fabric's outputs for each window [n, C, T, T] -> the frame [1, C, h*upscale, w*upscale]:
    each window's part outside the halo."""
    eh, ew = plan.extended
    s, windows = upscale, plan.windows()
    out = np.empty((1, tiles_out.shape[1], eh * s, ew * s), dtype=tiles_out.dtype)

    def copy(k: int) -> None:
        r, c = windows[k]
        out[0, :, r.keep_from * s:r.keep_to * s, c.keep_from * s:c.keep_to * s] = \
            tiles_out[k, :, (r.keep_from - r.start) * s:(r.keep_to - r.start) * s,
                      (c.keep_from - c.start) * s:(c.keep_to - c.start) * s]

    each(copy, range(len(windows)), threads)
    return out[:, :, :h * s, :w * s]


def run_tiled(y: np.ndarray, plan: TilePlan, upscale: int, run_tiles, threads: int = 1) -> np.ndarray:
    """y [1, M, h, w] -> stitched output [1, C, h*upscale, w*upscale], with one call
    run_tiles(windows [n, M, tile, tile]) -> [n, C, tile*upscale, tile*upscale] for all n windows
    of the frame (a fabric backend sends them to the accelerator as one batch). `threads` share
    the copies in and out."""
    _, _, h, w = y.shape
    return stitch_tiles(run_tiles(tile_windows(y, plan, threads)), plan, upscale, h, w, threads)
