"""Encode and decode images with a ScaleHyperprior teacher, as .lic format version 1.

The steps are CompressAI's ScaleHyperprior.compress/decompress, spelled out so that two things are
ours: the container (host/container.py) and `scale_indexes`, the single place where the hyper-
decoder's output becomes the GaussianConditional's scale-table indexes. Entropy decoding only works
when encoder and decoder compute identical indexes; version 1 uses the float h_s (reproducible on
one machine, not guaranteed across platforms), and the integer h_s replaces this one function.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from host.container import FORMAT_V1, LicFile, parse
from lic.errors import LicError
from training.teacher import SPATIAL_MULTIPLE, Teacher


def padded_size(height: int, width: int, multiple: int = SPATIAL_MULTIPLE) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected a uint8 HxWx3 array")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255.0)


def to_rgb8(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def pad_replicate(x: torch.Tensor) -> torch.Tensor:
    """Pad bottom/right to the model's multiple by repeating edge pixels (cheaper to code than zeros)."""
    h, w = x.shape[-2:]
    hp, wp = padded_size(h, w)
    return F.pad(x, (0, wp - w, 0, hp - h), mode="replicate") if (hp, wp) != (h, w) else x


def scale_indexes(teacher: Teacher, z_hat: torch.Tensor) -> torch.Tensor:
    """Hyper-decoder output -> scale-table indexes for the GaussianConditional (see module doc)."""
    m = teacher.model
    return m.gaussian_conditional.build_indexes(m.h_s(z_hat))


@torch.inference_mode()
def encode(teacher: Teacher, rgb: np.ndarray) -> bytes:
    """uint8 HxWx3 image -> complete .lic file bytes."""
    h, w = rgb.shape[:2]
    m = teacher.model
    x = pad_replicate(to_tensor(rgb))
    y = m.g_a(x)
    z = m.h_a(torch.abs(y))
    z_strings = m.entropy_bottleneck.compress(z)
    z_hat = m.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
    y_strings = m.gaussian_conditional.compress(y, scale_indexes(teacher, z_hat))
    return LicFile(version=FORMAT_V1, fingerprint=teacher.fingerprint, height=h, width=w,
                   streams=[z_strings[0], y_strings[0]]).to_bytes()


def check_model(lic: LicFile, teacher: Teacher, name: str) -> None:
    if lic.fingerprint != teacher.fingerprint:
        raise LicError(f"{name} was encoded by model {lic.fingerprint.hex()}, but the teacher {teacher.name} is "
                       f"{teacher.fingerprint.hex()}: decode it with the model that encoded it")


@torch.inference_mode()
def decode_y_hat(teacher: Teacher, lic: LicFile, name: str = "input") -> torch.Tensor:
    """Entropy-decode the quantised latent y_hat (1 x M x H/16 x W/16) of a version-1 file."""
    check_model(lic, teacher, name)
    if lic.version != FORMAT_V1 or len(lic.streams) != 2:
        raise LicError(f"{name}: expected format version 1 with 2 streams")
    m = teacher.model
    hp, wp = padded_size(lic.height, lic.width)
    z_shape = (hp // SPATIAL_MULTIPLE, wp // SPATIAL_MULTIPLE)
    z_hat = m.entropy_bottleneck.decompress([lic.streams[0]], z_shape)
    return m.gaussian_conditional.decompress([lic.streams[1]], scale_indexes(teacher, z_hat), z_hat.dtype)


@torch.inference_mode()
def decode(teacher: Teacher, data: bytes, name: str = "input") -> np.ndarray:
    """Complete .lic file bytes -> uint8 HxWx3 image, with the teacher's float g_s."""
    lic = parse(data, name)
    x_hat = teacher.model.g_s(decode_y_hat(teacher, lic, name))
    return to_rgb8(x_hat[..., :lic.height, :lic.width])
