"""Classical image codecs through Pillow, in memory: the baselines a learned codec has to beat.

Every codec runs with its library's usual settings, which for all four means 8-bit YCbCr with
4:2:0 chroma subsampling (the same trade-off a learned codec makes implicitly, and what users get
from the command-line tools). Sizes are whole files, headers included, like our .lic files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, features

from lic.errors import LicError


def _jpeg(im: Image.Image, quality: int) -> bytes:
    # Baseline libjpeg(-turbo) with optimised Huffman tables, as `cjpeg -optimize` writes: Pillow's
    # default generic tables waste 36% of the bytes at quality 5 on Kodak (2% at 70), which would
    # flatter any codec compared with it. 4:2:0 is Pillow's default too, spelled out so it cannot move.
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=True)
    return buf.getvalue()


def _webp(im: Image.Image, quality: int) -> bytes:
    # Lossy WebP is always 4:2:0 (VP8 key frame); method 6 is libwebp's slowest, best-compressing.
    buf = io.BytesIO()
    im.save(buf, format="WEBP", quality=quality, method=6)
    return buf.getvalue()


def _avif(im: Image.Image, quality: int) -> bytes:
    # Pillow's own libavif binding (AV1 intra). speed 6 is Pillow's default and libavif's usual
    # middle ground; 4:2:0 and full range are Pillow's defaults, written out here.
    buf = io.BytesIO()
    im.save(buf, format="AVIF", quality=quality, speed=6, subsampling="4:2:0", range="full")
    return buf.getvalue()


def _heif(im: Image.Image, quality: int) -> bytes:
    # HEVC intra through libheif + x265 (the core of BPG); 4:2:0 is x265's default, written out.
    buf = io.BytesIO()
    im.save(buf, format="HEIF", quality=quality, chroma=420)
    return buf.getvalue()


def _require_pillow_feature(feature: str, what: str) -> None:
    if not features.check(feature):
        raise LicError(f"this Pillow was built without {what}; install the Pillow wheel from requirements.lock")


def _require_heif() -> None:
    try:
        import pillow_heif  # why: optional codec, loaded only when HEIF is asked for
    except ImportError:
        raise LicError("HEIF baseline needs the pillow-heif package (pip install pillow-heif)") from None
    if not pillow_heif.libheif_info().get("encoders", {}).get("x265"):
        raise LicError("pillow-heif has no HEVC (x265) encoder in this build; HEIF baseline unavailable")
    # Teaches Image.open/save the HEIF format; safe to call again.
    pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Codec:
    name: str
    label: str                      # for tables and plot legends
    qualities: tuple[int, ...]      # default sweep, lowest rate first
    _encode: Callable[[Image.Image, int], bytes]
    _require: Callable[[], None]
    _format: str                    # Pillow's name for it, so decoding never guesses

    def check_available(self) -> None:
        self._require()

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        self._require()
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("expected a uint8 HxWx3 array")
        return self._encode(Image.fromarray(np.ascontiguousarray(rgb), "RGB"), quality)

    def decode(self, data: bytes) -> np.ndarray:
        self._require()
        with Image.open(io.BytesIO(data), formats=[self._format]) as im:
            # AVIF and HEIF decoders may hand back RGBA or another mode; a metric needs plain RGB.
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()

    def encode_decode(self, rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
        """Compress at `quality` and decompress: (file size in bytes, decoded uint8 HxWx3)."""
        data = self.encode(rgb, quality)
        out = self.decode(data)
        if out.shape != rgb.shape:
            raise LicError(f"{self.name} decoded a {out.shape[1]}x{out.shape[0]} image from a "
                           f"{rgb.shape[1]}x{rgb.shape[0]} input")
        return len(data), out


# Quality sweeps chosen on Kodak so that each codec's mean rate runs from about 0.1 to 1.2 bpp (the
# span of the learned models' curves), measured with exactly these settings (JPEG and WebP on all 24
# images, AVIF and HEIF on every third). JPEG cannot go that low usefully: below quality 5 libjpeg's
# quantisers saturate and only PSNR drops, so it starts at ~0.14 bpp. HEIF's rate climbs steeply
# with quality (0.09 bpp at 12, 1.3 at 50), hence its finer steps.
CODECS: dict[str, Codec] = {
    c.name: c for c in (
        Codec("jpeg", "JPEG (libjpeg, 4:2:0)", (5, 8, 10, 15, 20, 30, 40, 50, 60, 70),
              _jpeg, lambda: _require_pillow_feature("jpg", "JPEG support (libjpeg)"), "JPEG"),
        Codec("webp", "WebP (method 6)", (0, 5, 10, 20, 30, 40, 55, 70, 80),
              _webp, lambda: _require_pillow_feature("webp", "WebP support (libwebp)"), "WEBP"),
        Codec("avif", "AVIF (libavif, speed 6)", (10, 20, 30, 40, 50, 60, 66),
              _avif, lambda: _require_pillow_feature("avif", "AVIF support (libavif)"), "AVIF"),
        Codec("heif", "HEIF (x265 intra)", (13, 16, 20, 25, 30, 35, 40, 44, 48),
              _heif, _require_heif, "HEIF"),
    )
}


def get_codec(name: str) -> Codec:
    """The codec called `name`, checked usable here (LicError naming what is missing otherwise)."""
    codec = CODECS.get(name.strip().lower())
    if codec is None:
        raise LicError(f"unknown baseline codec {name!r}; choose from {', '.join(CODECS)}")
    codec.check_available()
    return codec
