"""Image files in and out: anything Pillow reads becomes 8-bit RGB; PNGs are written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable
from warnings import catch_warnings, simplefilter

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from host.geometry import DEFAULT_MAX_PIXELS, check_pixels
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
        a = np.asarray(im).astype(np.int64).clip(0, None)
        if mode == "I" and a.max(initial=0) <= 255:
            a8 = a.astype(np.uint8)
        else:
            a8 = (a >> 8).clip(0, 255).astype(np.uint8)
        warnings.append(f"{mode} image has more than 8 bits per sample: reduced to 8-bit")
        warnings.append("greyscale image: coded as RGB with three equal channels")
        return np.repeat(a8[:, :, None], 3, axis=2), warnings
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        unit = a.size and a.min() >= 0 and a.max() <= 1
        a8 = np.rint(np.clip(a * 255 if unit else a, 0, 255)).astype(np.uint8)
        warnings.append("floating-point image: " + ("0..1 scaled to 0..255" if unit else "clipped to 0..255")
                        + ", coded as RGB with three equal channels")
        return np.repeat(a8[:, :, None], 3, axis=2), warnings
    if mode in ("La", "RGBa"):  # premultiplied alpha: Pillow converts these only via their plain form
        im = im.convert(mode[:-1] + "A")
        mode = im.mode
    if mode in ("L", "1", "LA"):
        warnings.append("greyscale image: coded as RGB with three equal channels")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        warnings.append(f"{mode} image has an alpha channel: it is dropped (colour kept, not composited)")
    elif mode not in ("RGB", "P", "L", "1", "LA"):
        warnings.append(f"{mode} image converted to RGB")
    if sixteen_bit_rgb:
        warnings.append("16-bit RGB image: reduced to 8-bit")
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy(), warnings


def load_rgb(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS,
             check_size: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, list[str]]:
    """Read an image file as uint8 HxWx3 plus human-readable conversion warnings. The EXIF
    orientation is applied; of an animated or multi-page file only the first frame is read; an
    image over `max_pixels`, or one `check_size(height, width)` refuses, is refused from its header,
    before its pixels are decompressed."""
    path = Path(path)
    if not path.is_file():
        raise LicError(f"image not found: {path}")
    warnings = []
    # Pillow warns through the warnings module (a corrupt EXIF block, a truncated chunk): those become
    # this function's warnings, one line each, instead of Python's multi-line UserWarning output
    with catch_warnings(record=True) as pillow:
        simplefilter("always")
        rgb, more = _read_rgb(path, max_pixels, check_size, warnings)
    return rgb, warnings + [f"Pillow: {str(w.message).splitlines()[0].strip()}" for w in pillow] + more


def _read_rgb(path: Path, max_pixels: int, check_size, warnings: list[str]) -> tuple[np.ndarray, list[str]]:
    try:
        # open() reads the header only; the size check below, before load(), replaces Pillow's own
        # bomb limit so that --max-pixels is the one limit and its message is ours
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
        with im:
            w, h = im.size
            check_pixels(h, w, max_pixels, str(path))
            if check_size is not None:
                check_size(h, w)
            if getattr(im, "is_animated", False):
                warnings.append("animated or multi-frame image: only the first frame is coded")
            sixteen_bit_rgb = im.mode == "RGB" and any(";16" in str(t.args) for t in im.tile)
            im.load()
            try:
                oriented = ImageOps.exif_transpose(im)
            except Exception:  # a damaged EXIF block: the pixels are still good
                oriented = im
                warnings.append("EXIF orientation unreadable: not applied")
            return to_rgb8(oriented, sixteen_bit_rgb)
    except LicError:
        raise
    except UnidentifiedImageError:
        raise LicError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated or corrupt image data
        raise LicError(f"{path}: cannot read image ({e})") from None
    except Exception as e:  # Pillow's format plugins raise more kinds on crafted files (struct.error, ...)
        raise LicError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def refuse_same_file(source: Path, target: Path, what: str = "input") -> None:
    """Writing `target` must not destroy `source` (the same file, through any link)."""
    try:
        same = target.exists() and os.path.samefile(source, target)
    except OSError:
        same = False
    if same:
        raise LicError(f"{target} is the {what} {source}: refusing to overwrite it; choose another -o")


PARTIAL = ".lic-partial"  # suffix of a file being written: .NAME.PID.lic-partial beside NAME


def _remove_stale_partials(folder: Path) -> None:
    """A run killed with SIGKILL (which nothing can catch) leaves its partial file behind; the next
    run writing into the folder removes those whose process is gone."""
    for p in folder.glob(f".*{PARTIAL}"):
        try:
            pid = int(p.name[: -len(PARTIAL)].rsplit(".", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue  # not ours, or a live process of another user


def write_atomic(path: Path | str, data: bytes) -> None:
    """Write bytes so that the target is either complete or untouched, never half-written: into
    .NAME.PID.lic-partial beside it, then renamed over it. The partial file is removed on any
    exception, KeyboardInterrupt and SIGTERM/SIGHUP included (lic/cli.py turns those into one)."""
    path = Path(path)
    folder = path.parent
    if folder and not folder.is_dir():
        raise LicError(f"output folder does not exist: {folder}")
    _remove_stale_partials(folder)
    tmp = folder / f".{path.name}.{os.getpid()}{PARTIAL}"
    tmp.unlink(missing_ok=True)  # left by an earlier process that had this pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the mode a plain open() gives, less umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_png(path: Path | str, rgb: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, format="PNG")
    write_atomic(path, buf.getvalue())
