"""Image quality and rate metrics, computed the way CompressAI's evaluation computes them, so our
numbers sit on the same axes as its published curves."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from scipy.ndimage import correlate1d

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


def _gaussian_window(n: int, sigma: float) -> np.ndarray:
    x = np.arange(n) - (n - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2-D correlation with the separable window outer(g, g), 'valid' region only."""
    n, r = len(g), len(g) // 2
    out = correlate1d(correlate1d(img, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return out[r:out.shape[0] - (n - 1 - r), r:out.shape[1] - (n - 1 - r)]


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of 8-bit RGB, float64 in [0, 255]."""
    x = rgb.astype(np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


# VIF's model of the visual channel noise (sigma_n^2 = 2 on 0..255 luma), from Sheikh & Bovik's
# pixel-domain reference (vifvec / vifp_mscale.m) and kept by every later port.
VIF_NOISE_VAR = 2.0
_EPS = 1e-10


def vif_p(reference: np.ndarray, distorted: np.ndarray) -> float | None:
    """Pixel-domain Visual Information Fidelity (Sheikh & Bovik, "Image information and visual
    quality", IEEE TIP 2006), on BT.601 luma, four scales with Gaussian windows of 17, 9, 5, 3 taps
    (sigma = taps/5), as the authors' vifp_mscale. 1.0 for identical images; below 1 as information
    is lost (it can exceed 1 for contrast enhancement). None when a side is shorter than 41 pixels
    (the four scales need it)."""
    _check_pair(reference, distorted)
    if min(reference.shape[:2]) < 41:
        return None
    ref, dist = luma(reference), luma(distorted)
    num = den = 0.0
    for scale in range(4):
        n = 2 ** (4 - scale) + 1
        g = _gaussian_window(n, n / 5.0)
        if scale > 0:
            ref, dist = _filter_valid(ref, g)[::2, ::2], _filter_valid(dist, g)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, g), _filter_valid(dist, g)
        s1 = np.maximum(_filter_valid(ref * ref, g) - mu1 * mu1, 0.0)
        s2 = np.maximum(_filter_valid(dist * dist, g) - mu2 * mu2, 0.0)
        s12 = _filter_valid(ref * dist, g) - mu1 * mu2
        gain = s12 / (s1 + _EPS)
        sv = s2 - gain * s12
        flat_ref = s1 < _EPS
        gain[flat_ref], sv[flat_ref], s1[flat_ref] = 0.0, s2[flat_ref], 0.0
        flat_dist = s2 < _EPS
        gain[flat_dist], sv[flat_dist] = 0.0, 0.0
        negative = gain < 0
        sv[negative], gain[negative] = s2[negative], 0.0
        sv = np.maximum(sv, _EPS)
        num += float(np.sum(np.log10(1.0 + gain * gain * s1 / (sv + VIF_NOISE_VAR))))
        den += float(np.sum(np.log10(1.0 + s1 / VIF_NOISE_VAR)))
    return num / den if den > 0 else 1.0
