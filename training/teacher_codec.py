"""Encode and decode images with a ScaleHyperprior teacher, as .lic format version 1, 2 or 3.

The steps are CompressAI's ScaleHyperprior.compress/decompress, spelled out so that two things are
ours: the container (host/container.py) and `scale_indexes`, the single place where the hyper-
decoder's output becomes the GaussianConditional's scale-table indexes. Entropy decoding only works
when encoder and decoder compute identical indexes:
  version 1  the teacher's float h_s: reproducible on one machine, not guaranteed across platforms;
  version 2  an integer h_s (host/integer_hyper.py) on the z symbols: bit-exact everywhere;
  version 3  as version 2, with y coded as one independent substream per latent tile.
Encoding is CompressAI's; decoding uses the project's checked C rANS decoder (host/rans.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import hashlib
from dataclasses import dataclass
from pathlib import Path

from host.container import FORMAT_V1, FORMAT_V2, FORMAT_V3, LicFile, parse
from host.geometry import DEFAULT_MAX_PIXELS, hyperprior_geometry
from host.integer_hyper import IntegerHyperSynthesis
from host.rans import CdfTable
from host.runtime import decode_y, y_regions
from host.tiling import MAX_Y_SUBSTREAMS, TilePlan
from lic.errors import LicError
from training.teacher import (SPATIAL_MULTIPLE, TEACHERS_DIR, Teacher, load_default, load_teacher, read_manifest,
                              shipped_entry)


@dataclass
class EntropyModels:
    """What writes and reads the entropy-coded streams: the teacher's encoder and entropy models,
    plus, for versions 2 and 3, the integer h_s that replaces the teacher's float one, and for
    version 3 the (tile, halo) geometry of the y substreams (a decoder package's tile and halo)."""
    teacher: Teacher
    integer_hs: IntegerHyperSynthesis | None = None
    tiles: tuple[int, int] | None = None
    # what files of earlier releases carry for the same contract (they named the encoder): read, never written
    legacy_fingerprints: frozenset[bytes] = frozenset()

    def __post_init__(self):
        if self.tiles is not None and self.integer_hs is None:
            raise LicError("tile substreams (format v3) need an integer h_s (--integer-hs)")

    @property
    def version(self) -> int:
        if self.integer_hs is None:
            return FORMAT_V1
        return FORMAT_V2 if self.tiles is None else FORMAT_V3

    @property
    def fingerprint(self) -> bytes:
        """The decoding contract the files carry: what decoding them needs, never what encoded them.
        That is the teacher whose entropy models, h_s and synthesis decode them (for an encoder tuned
        from a teacher, that teacher: the tuned g_a is read by no decoder) and, in versions 2 and 3,
        the integer h_s that gives y's scales. So every encoder of one rate point, and every re-tune
        of it, writes files that every decoder of that rate point reads (docs/FORMAT.md)."""
        base = self.teacher.decoder_fingerprint
        if self.integer_hs is None:
            return base
        return hashlib.sha256(base + self.integer_hs.fingerprint).digest()[:16]

    @property
    def name(self) -> str:
        return self.teacher.name + (" + integer h_s" if self.integer_hs is not None else "")


def shipped_integer_hs_path(quality: int) -> Path:
    entry = shipped_entry(quality)
    if "integer_hs" not in entry:
        raise LicError(f"no shipped integer h_s for quality {quality}; train one with `lic distill-hyper` "
                       f"and pass it with --integer-hs PATH")
    return TEACHERS_DIR / entry["integer_hs"]


def shipped_integer_hs(quality: int) -> IntegerHyperSynthesis:
    return IntegerHyperSynthesis.load(shipped_integer_hs_path(quality))


def find_shipped(fingerprint: bytes) -> EntropyModels | None:
    """The shipped models that decode a file of this fingerprint (teacher, and integer h_s for
    versions 2 and 3), found through the manifest without loading the others; the fingerprints files
    of earlier releases carry (they named the tuned encoder) map to the same models."""
    for e in read_manifest():
        if e["fingerprint"] == fingerprint.hex():
            return EntropyModels(load_default(e["quality"]))
        legacy = frozenset(bytes.fromhex(f) for f in e.get("legacy_file_fingerprints", ()))
        if fingerprint.hex() == e.get("integer_hs_file_fingerprint") or fingerprint in legacy:
            return EntropyModels(load_default(e["quality"]), shipped_integer_hs(e["quality"]), legacy_fingerprints=legacy)
    return None


def package_encoder(package) -> EntropyModels:
    """The encoder a decoder package's student was made for (its manifest's "teacher": a shipped
    teacher or tuned encoder), with the package's integer h_s: what writes the board's files."""
    em = EntropyModels(load_teacher(package.manifest["teacher"]), package.integer_hs)
    if em.fingerprint != package.file_fingerprint:
        raise LicError(f"decoder package {package.name}: its encoder {package.manifest['teacher']} writes files "
                       f"{em.fingerprint.hex()}, not the package's {package.file_fingerprint.hex()}")
    return em


def as_entropy_models(m: "Teacher | EntropyModels") -> EntropyModels:
    return m if isinstance(m, EntropyModels) else EntropyModels(m)


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


def z_symbols(em: EntropyModels, z_hat: torch.Tensor) -> torch.Tensor:
    """The integers the EntropyBottleneck coded: z_hat is symbols + per-channel medians, and
    (q + m) - m rounds back to q exactly in float32 for any |q| < 2^22."""
    eb = em.teacher.model.entropy_bottleneck
    return torch.round(z_hat - eb._get_medians())


def scale_indexes(em: EntropyModels, z_hat: torch.Tensor) -> torch.Tensor:
    """Hyper-decoder -> scale-table indexes for the GaussianConditional (see module doc)."""
    if em.integer_hs is not None:
        q = z_symbols(em, z_hat).cpu().numpy().astype(np.int64)
        return torch.from_numpy(np.stack([em.integer_hs.indexes(qi) for qi in q])).to(z_hat.device)
    m = em.teacher.model
    return m.gaussian_conditional.build_indexes(m.h_s(z_hat))


def y_substream_regions(tiles: tuple[int, int] | None, h: int, w: int) -> list[tuple[slice, slice]]:
    """The latent regions of y that get a stream each: the frame, or (format v3) bands of rows of each
    tile's core, as many bands as TilePlan.encoder_bands says."""
    if tiles is None:
        return [(slice(0, h), slice(0, w))]
    plan = TilePlan(h, w, *tiles)
    n = len(plan.cores())
    if n > MAX_Y_SUBSTREAMS:
        raise LicError(f"this image needs {n} tile substreams at tile {tiles[0]}; a .lic file holds "
                       f"at most {MAX_Y_SUBSTREAMS}: encode it as format v2 (no tiles)")
    return plan.substreams(plan.encoder_bands())


def encode(models: Teacher | EntropyModels, rgb: np.ndarray, refinement=None) -> bytes:
    """uint8 HxWx3 image -> complete .lic file bytes (version 2 when an integer h_s is given, 3 when
    tile geometry is given too). With a `refinement` (quantize/latent_refinement.py), the latents are
    optimised for this image and the decoder of the file instead of taken from g_a as they are."""
    em = as_entropy_models(models)
    h, w = rgb.shape[:2]
    m = em.teacher.model
    x = pad_replicate(to_tensor(rgb))
    if refinement is not None:
        y, z = refinement.latents(em, x, h, w)
    else:
        with torch.inference_mode():
            y = m.g_a(x)
            z = m.h_a(torch.abs(y))
    return _write(em, y, z, h, w)


@torch.inference_mode()
def _write(em: EntropyModels, y: torch.Tensor, z: torch.Tensor, h: int, w: int) -> bytes:
    m = em.teacher.model
    z_strings = m.entropy_bottleneck.compress(z)
    z_hat = m.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
    indexes = scale_indexes(em, z_hat)
    lic = LicFile(version=em.version, fingerprint=em.fingerprint, height=h, width=w, tiles=em.tiles,
                  streams=[z_strings[0]])
    for rows, cols in y_substream_regions(em.tiles, *y.shape[-2:]):
        lic.streams.append(m.gaussian_conditional.compress(y[:, :, rows, cols], indexes[:, :, rows, cols])[0])
    return lic.to_bytes()


def check_model(lic: LicFile, em: EntropyModels, name: str) -> None:
    if (lic.version == FORMAT_V1) != (em.integer_hs is None):
        need = "the teacher's float h_s" if lic.version == FORMAT_V1 else "an integer h_s"
        raise LicError(f"{name} is format version {lic.version}, which needs {need}; {em.name} does not match")
    if lic.fingerprint != em.fingerprint and lic.fingerprint not in em.legacy_fingerprints:
        raise LicError(f"{name} needs decoder {lic.fingerprint.hex()}, but {em.name} is "
                       f"{em.fingerprint.hex()}: decode it with the models of its rate point")


def cdf_arrays(entropy_model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CompressAI EntropyModel's quantised CDF rows, their lengths and offsets (after update())."""
    return (entropy_model._quantized_cdf.numpy().astype(np.int32),
            entropy_model._cdf_length.numpy().reshape(-1).astype(np.int32),
            entropy_model._offset.numpy().reshape(-1).astype(np.int32))


def cdf_tables(model) -> tuple[CdfTable, CdfTable]:
    """(z, y) tables of the C rANS decoder for a ScaleHyperprior, built once per model."""
    tables = model.__dict__.get("_lic_cdf_tables")
    if tables is None:
        tables = tuple(CdfTable(*cdf_arrays(e)) for e in (model.entropy_bottleneck, model.gaussian_conditional))
        model.__dict__["_lic_cdf_tables"] = tables
    return tables


@torch.inference_mode()
def decode_latent_parts(models: Teacher | EntropyModels, lic: LicFile, name: str = "input",
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z symbols, scale indexes, y symbols) of a file, each an integer array, entropy-decoded as
    CompressAI's EntropyBottleneck/GaussianConditional.decompress would, with the checked C decoder,
    after the header, the stream count and lengths and the model's geometry are checked together.
    None of the three depends on the synthesis transform: they are what a file *is*."""
    em = as_entropy_models(models)
    check_model(lic, em, name)
    m = em.teacher.model
    z_table, y_table = cdf_tables(m)
    geo = hyperprior_geometry(lic, z_channels=len(z_table), y_channels=m.M, spatial_multiple=SPATIAL_MULTIPLE,
                              max_pixels=max_pixels, name=name)
    y_regions(lic, *geo.y_shape[1:], name)  # the stream count, before any decoding
    z_symbols = z_table.decode_per_row(lic.streams[0], geo.z_shape, f"{name}: z stream")
    z_hat = torch.from_numpy(z_symbols).float()[None] + m.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    indexes = scale_indexes(em, z_hat)[0].numpy().astype(np.int32)
    if indexes.shape != geo.y_shape:
        raise LicError(f"{name}: h_s gives {indexes.shape}, expected {geo.y_shape}")
    return z_symbols, indexes, decode_y(y_table, lic, indexes, name)


def decode_y_hat(models: Teacher | EntropyModels, lic: LicFile, name: str = "input",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """The quantised latent y_hat (1 x M x H/16 x W/16) of a file (decode_latent_parts)."""
    return torch.from_numpy(decode_latent_parts(models, lic, name, max_pixels)[2])[None].float()


@torch.inference_mode()
def decode(models: Teacher | EntropyModels, data: bytes, name: str = "input",
           max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Complete .lic file bytes -> uint8 HxWx3 image, with the teacher's float g_s."""
    em = as_entropy_models(models)
    lic = parse(data, name)
    x_hat = em.teacher.model.g_s(decode_y_hat(em, lic, name, max_pixels))
    return to_rgb8(x_hat[..., :lic.height, :lic.width])
