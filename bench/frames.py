"""The frame sets `lic bench` decodes: Kodak as it is (768x512, six of them portrait 512x768) and
1280x720 / 1920x1080 frames made from shipped data, nothing downloaded.

An HD frame is a mosaic of whole landscape Kodak images (2x2 for 720p, 3x3 for 1080p), centre-cropped
to the frame size; frame i starts at landscape image i x tiles. The seams between images are
sharper than anything in a natural photograph: they cost a little rate, and they are the same for
every decoder, which is what a speed and energy comparison needs (per-pixel work does not depend on content, rate only slightly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lic.errors import LicError

# name -> (width, height, mosaic side in Kodak images)
HD_SIZES = {"720p": (1280, 720, 2), "1080p": (1920, 1080, 3)}


@dataclass
class FrameSet:
    name: str          # "kodak", "720p", "1080p"
    width: int         # nominal frame size (Kodak's portrait images are the same size turned)
    height: int
    frames: list[tuple[str, np.ndarray]]  # (label, uint8 HxWx3)
    how: str           # one line: where the frames come from

    @property
    def pixels(self) -> int:
        return self.width * self.height


def kodak_set(images: list[tuple[str, np.ndarray]]) -> FrameSet:
    if not images:
        raise LicError("no Kodak images to benchmark")
    h, w = images[0][1].shape[:2]
    w, h = max(w, h), min(w, h)
    return FrameSet("kodak", w, h, images, f"Kodak PNGs as shipped ({len(images)} images; portrait ones 512x768)")


def mosaic(tiles: list[np.ndarray], side: int, width: int, height: int) -> np.ndarray:
    """side x side tiles (all the same shape) joined row by row, centre-cropped to width x height."""
    rows = [np.concatenate(tiles[r * side:(r + 1) * side], axis=1) for r in range(side)]
    full = np.concatenate(rows, axis=0)
    fh, fw = full.shape[:2]
    if fh < height or fw < width:
        raise LicError(f"a {side}x{side} mosaic of {tiles[0].shape[1]}x{tiles[0].shape[0]} images is "
                       f"{fw}x{fh}, smaller than {width}x{height}")
    y, x = (fh - height) // 2, (fw - width) // 2
    return np.ascontiguousarray(full[y:y + height, x:x + width])


def hd_set(name: str, images: list[tuple[str, np.ndarray]], count: int) -> FrameSet:
    """`count` frames of size HD_SIZES[name] from the landscape images among `images`."""
    width, height, side = HD_SIZES[name]
    landscape = [(n, a) for n, a in images if a.shape[1] > a.shape[0]]
    shapes = {a.shape for _, a in landscape}
    if len(shapes) != 1:
        raise LicError(f"HD mosaics need landscape images of one size; found sizes {sorted(shapes)}")
    need = side * side
    if len(landscape) < need:
        raise LicError(f"a {name} frame needs {need} landscape images, only {len(landscape)} given")
    frames, n = [], len(landscape)
    for i in range(count):
        start = (i * need) % n + (i * need) // n  # shifted by one each time the images wrap around
        picked = [landscape[(start + k) % n] for k in range(need)]
        label = f"{name}-{i}(" + "+".join(n.rsplit(".", 1)[0] for n, _ in picked) + ")"
        frames.append((label, mosaic([a for _, a in picked], side, width, height)))
    return FrameSet(name, width, height, frames,
                    f"{count} frames, each a {side}x{side} mosaic of landscape Kodak images, centre-cropped")


def frame_sets(kodak: list[tuple[str, np.ndarray]], sizes: list[str], hd_count: int,
               kodak_limit: int | None = None) -> list[FrameSet]:
    if kodak_limit is not None and kodak_limit < 1:
        raise LicError(f"--limit must be at least 1, got {kodak_limit}")
    out = []
    for s in sizes:
        if s == "kodak":
            out.append(kodak_set(kodak[:kodak_limit]))
        elif s in HD_SIZES:
            out.append(hd_set(s, kodak, hd_count))
        else:
            raise LicError(f"unknown frame size {s!r}; choose from kodak, {', '.join(HD_SIZES)}")
    return out
