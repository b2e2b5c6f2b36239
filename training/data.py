"""The image sets: Kodak (every evaluation), BSDS500 less its held-out photos (training, as random
crops held decoded in memory: ~230 MB as uint8) and the held-out photos."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from host.image_io import list_images, load_rgb
from lic.errors import LicError
from training.loop import DEFAULT_DATA, REPO

KODAK = REPO.parent / "shared" / "data" / "kodak"

# Photos no student, integer h_s or cache trains on, so that rate and quality can be checked on
# images outside training (Kodak aside): the first 50 of BSDS500's test split, in name order.
HELD_OUT_SPLIT = DEFAULT_DATA / "test"
HELD_OUT_COUNT = 50


def held_out_images() -> list[Path]:
    if not HELD_OUT_SPLIT.is_dir():
        return []
    return list_images(HELD_OUT_SPLIT)[:HELD_OUT_COUNT]


def first_images(folder: Path, limit: int | None) -> list[Path]:
    if limit is not None and limit < 1:
        raise LicError(f"--limit must be at least 1, got {limit}")
    return list_images(folder)[:limit]


def load_images(files: list[Path]) -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8) per file; each file's decoding warnings as one line on stderr."""
    images = []
    for f in files:
        rgb, warnings = load_rgb(f)
        for w in warnings:
            print(f"lic: {f.name}: {w}", file=sys.stderr)
        images.append((f.name, rgb))
    return images


def training_images(folders: list[Path]) -> list[Path]:
    """Every image under `folders`, less the held-out photos."""
    held = {p.resolve() for p in held_out_images()}
    out = [p for folder in folders for p in list_images(folder, recursive=True) if p.resolve() not in held]
    if not out:
        raise LicError(f"no training images under {', '.join(map(str, folders))}")
    return out


class RandomCrops:
    """Endless batches of random crops with random horizontal flips, as uint8 -> float [0, 1]."""

    def __init__(self, folders: list[Path], crop: int, seed: int):
        self.images = []
        for p in training_images(folders):
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
            if min(a.shape[:2]) >= crop:
                self.images.append(a)
        if not self.images:
            raise LicError(f"no training image is at least {crop}x{crop}")
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> torch.Tensor:
        c = self.crop
        out = np.empty((size, c, c, 3), dtype=np.uint8)
        for i in range(size):
            a = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(a.shape[0] - c + 1)
            x = self.rng.integers(a.shape[1] - c + 1)
            patch = a[y:y + c, x:x + c]
            out[i] = patch[:, ::-1] if self.rng.random() < 0.5 else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
