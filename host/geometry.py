"""What a .lic header implies, checked before any decoding starts and before anything is allocated.

The header's image size fixes the latent geometry (docs/FORMAT.md: z is ceil(H/64) x ceil(W/64)
per channel, y four times that), hence how many symbols each stream must hold and how much memory
decoding takes. A file is refused when that size is over the pixel limit (the header allows up to
65535 x 65535, i.e. ~200 GB of decoder activations), when its stream count is not the version's,
or when a stream is too short or too long for the symbols the geometry says it holds
(host/rans.py, CdfTable.check_stream). Every decoder (teacher, student, any entropy coder) goes
through here.
"""

from __future__ import annotations

from dataclasses import dataclass

from host.container import DEFAULT_MAX_PIXELS, FORMAT_V1, FORMAT_V2, FORMAT_V3, LicFile, check_pixels  # noqa: F401
from lic.errors import LicError

# [z, y]; version 3 has z and y substreams, as many as its tile geometry allows
# (host/runtime.py, y_regions) once the pixel limit here has passed.
HYPERPRIOR_STREAMS = {FORMAT_V1: 2, FORMAT_V2: 2, FORMAT_V3: None}
Z_PER_Y = 4  # y has 4x z's resolution per axis (two x2 upsamplings in h_s)


@dataclass(frozen=True)
class HyperpriorGeometry:
    z_shape: tuple[int, int, int]  # (channels, h, w) of the hyper-latent
    y_shape: tuple[int, int, int]  # (channels, h, w) of the latent


def hyperprior_geometry(lic: LicFile, *, z_channels: int, y_channels: int, spatial_multiple: int,
                        max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "input") -> HyperpriorGeometry:
    """The z and y shapes a file must decode to; a LicError if the file cannot be one."""
    if lic.version not in HYPERPRIOR_STREAMS:
        raise LicError(f"{name}: format version {lic.version} has no hyperprior streams")
    want = HYPERPRIOR_STREAMS[lic.version]
    if want is not None and len(lic.streams) != want:
        raise LicError(f"{name}: expected {want} streams, found {len(lic.streams)}")
    check_pixels(lic.height, lic.width, max_pixels, name)
    zh, zw = -(-lic.height // spatial_multiple), -(-lic.width // spatial_multiple)
    return HyperpriorGeometry((z_channels, zh, zw), (y_channels, zh * Z_PER_Y, zw * Z_PER_Y))
