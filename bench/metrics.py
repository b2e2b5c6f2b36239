"""Image quality and rate metrics, computed the way CompressAI's evaluation computes them, so our
numbers sit on the same axes as its published curves."""

from __future__ import annotations

import math

import numpy as np
import torch

# Identical images have infinite PSNR; an inf would poison every mean and is not valid JSON. Capping
# keeps both usable, and no lossy codec comes anywhere near it: a report of 100 dB means "identical
# or near enough" (a single sample off by one in a Kodak image is ~109 dB).
PSNR_CAP_DB = 100.0

# pytorch_msssim downsamples 4 times and then needs room for its 11-tap window.
MS_SSIM_MIN_SIDE = 161


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected two HxWx3 images of the same shape, got {a.shape} and {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB with peak 255, from the MSE over all three channels together (as CompressAI
    does, rather than averaging per-channel PSNRs); capped at PSNR_CAP_DB."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(255.0 ** 2 / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM on RGB scaled to [0, 1] (data_range=1.0, pytorch_msssim's default window and weights),
    as CompressAI's eval_model computes it. None when a side is too short for its five scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check_pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None

    def tensor(x: np.ndarray) -> torch.Tensor:
        # a copy: decoded arrays may be read-only views, which torch.from_numpy warns about
        return torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float().div_(255.0)

    return float(_ms_ssim(tensor(a), tensor(b), data_range=1.0))


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of num_bytes for an image of height x width (all bytes counted,
    headers included: that is what a user stores or sends)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return num_bytes * 8.0 / (height * width)
