"""Image files in and out: anything Pillow reads becomes 8-bit RGB; PNGs are written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lic.errors import LicError


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def list_images(folder: Path | str, recursive: bool = False) -> list[Path]:
    """Image files in a folder (by suffix), sorted by path; LicError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LicError(f"image folder not found: {folder}")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise LicError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def to_rgb8(im: Image.Image, sixteen_bit_rgb: bool = False) -> tuple[np.ndarray, list[str]]:
    """Convert any Pillow image to uint8 HxWx3, saying what was lost on the way.

    Pillow reads 16-bit RGB PNGs as mode "RGB", keeping the top 8 bits; the caller tells us so
    (it is only visible in the undecoded tile descriptor) and we say it.
    """
    warnings = []
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) greyscale: keep the top 8 bits, as a viewer would show it.
        a = np.asarray(im, dtype=np.uint32 if mode == "I" else np.uint16).astype(np.uint32)
        if mode == "I" and a.max(initial=0) <= 255:
            a8 = a.astype(np.uint8)
        else:
            a8 = (a >> 8).clip(0, 255).astype(np.uint8)
        warnings.append(f"{mode} image has more than 8 bits per sample: reduced to 8-bit")
        warnings.append("greyscale image: coded as RGB with three equal channels")
        return np.repeat(a8[:, :, None], 3, axis=2), warnings
    if mode == "F":
        raise LicError("floating-point images are not supported; convert to 8- or 16-bit first")
    if mode in ("L", "1", "LA"):
        warnings.append("greyscale image: coded as RGB with three equal channels")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        warnings.append(f"{mode} image has an alpha channel: it is dropped (colour kept, not composited)")
    elif mode not in ("RGB", "P", "L", "1", "LA"):
        warnings.append(f"{mode} image converted to RGB")
    if sixteen_bit_rgb:
        warnings.append("16-bit RGB image: reduced to 8-bit")
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy(), warnings


def load_rgb(path: Path | str) -> tuple[np.ndarray, list[str]]:
    """Read an image file as uint8 HxWx3 plus human-readable conversion warnings."""
    path = Path(path)
    if not path.is_file():
        raise LicError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            sixteen_bit_rgb = im.mode == "RGB" and any(";16" in str(t.args) for t in im.tile)
            im.load()
            return to_rgb8(im, sixteen_bit_rgb)
    except UnidentifiedImageError:
        raise LicError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt image data
        raise LicError(f"{path}: cannot read image ({e})") from None


def write_atomic(path: Path | str, data: bytes) -> None:
    """Write bytes so that the target is either complete or untouched, never half-written."""
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise LicError(f"output folder does not exist: {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates owner-only files; give the result the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_png(path: Path | str, rgb: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, format="PNG")
    write_atomic(path, buf.getvalue())
