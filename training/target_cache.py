"""`lic cache-targets`: the frozen teacher's half of distillation, computed once.

Decoder-only distillation spends most of a step in the teacher (g_a and g_s cost ~84 kMAC per
pixel against the student's ~4). Since the teacher is frozen, its targets are a fixed function of
the image: cache them and a step costs the student alone.

The cache holds whole training images, not crops: y_hat comes from g_a over the whole image and
x_teacher from g_s over the whole y_hat, exactly what a .lic file of that image carries and what
its teacher decodes. Training on whole images (or on latent-aligned windows of them) then sees the
same borders a deployed decoder sees, instead of crop borders the teacher never saw.

Each image is stored in two variants, as is and mirrored: the teacher is not mirror-equivariant,
so a mirrored target must come from the teacher, not from flipping the cached arrays. Portrait
images are turned to landscape first, so that all entries share one shape.

Layout of a cache folder (all arrays uint8 / int8, memory-mapped when training):
  manifest.json   teacher name and fingerprint, image list, shape, command, time
  x.npy           (N, H, W, 3) uint8      the images
  x_teacher.npy   (N, H, W, 3) uint8      the teacher's decode, rounded like a decoded PNG
  y_hat.npy       (N, M, H/16, W/16) int8 the latent integers, clipped to int8 (counted in the manifest)
  z.npy           (N, N_z, H/64, W/64) int8  the hyper-latent symbols the EntropyBottleneck codes
                                        (for `lic distill-hyper --cache`)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lic.errors import LicError
from training.data import training_images
from training.loop import DEFAULT_DATA, command_line, full_fp32_on_gpu, hardware, require_cuda

CACHE_VERSION = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--teacher", default=None, help="teacher spec (zoo:..., a checkpoint path, or q1..q4)")
    g.add_argument("--quality", type=int, default=None, help="use the shipped teacher of this quality (1..4)")
    p.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA],
                   help="folders of training images (default: ../shared/data/bsds500 less its held-out images)")
    p.add_argument("--size", default="320x448",
                   help="HxW every entry is cropped to, multiples of 64 (default 320x448, from BSDS500's 321x481)")
    p.add_argument("-o", "--out", type=Path, required=True, help="cache folder to write (replaced atomically)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu",
                   help="where the teacher runs: cpu (default) or cuda. A GPU computes the same targets to within "
                        "float rounding (TF32 off), so a handful of y_hat values may round the other way")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LicError(f"--size must look like 320x448, got {text!r}") from None
    if h % 64 or w % 64 or h <= 0 or w <= 0:
        raise LicError(f"--size must be positive multiples of 64 (the hyper-latent's scale), got {text}")
    return h, w


def _landscape_crop(a: np.ndarray, h: int, w: int) -> np.ndarray | None:
    if a.shape[0] > a.shape[1]:
        a = np.rot90(a)
    if a.shape[0] < h or a.shape[1] < w:
        return None
    y0, x0 = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return np.ascontiguousarray(a[y0:y0 + h, x0:x0 + w])


@torch.no_grad()
def build_cache(teacher, images: list[Path], out: Path, size: tuple[int, int],
                device: torch.device = torch.device("cpu")) -> dict:
    from PIL import Image

    h, w = size
    model = teacher.model.eval().to(device)
    entries = []
    for p in images:
        with Image.open(p) as im:
            a = _landscape_crop(np.asarray(im.convert("RGB")), h, w)
        if a is not None:
            entries += [(p, False, a), (p, True, a[:, ::-1])]
    if not entries:
        raise LicError(f"no training image covers {h}x{w}")
    n, m = len(entries), model.M
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    xs = np.lib.format.open_memmap(tmp / "x.npy", "w+", np.uint8, (n, h, w, 3))
    xts = np.lib.format.open_memmap(tmp / "x_teacher.npy", "w+", np.uint8, (n, h, w, 3))
    ys = np.lib.format.open_memmap(tmp / "y_hat.npy", "w+", np.int8, (n, m, h // 16, w // 16))
    zs = np.lib.format.open_memmap(tmp / "z.npy", "w+", np.int8, (n, model.N, h // 64, w // 64))
    medians = model.entropy_bottleneck._get_medians()
    clipped = 0
    t0 = time.time()
    for i, (_, _, a) in enumerate(tqdm(entries, desc=f"teacher targets {teacher.name}", unit="img")):
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(device).float().div_(255)
        y = model.g_a(x)
        y_hat = torch.round(y)
        z = model.entropy_bottleneck.quantize(model.h_a(torch.abs(y)), "symbols", medians)
        x_t = model.g_s(y_hat).clamp_(0, 1)
        xs[i] = a
        xts[i] = (x_t[0].permute(1, 2, 0) * 255).round_().to(torch.uint8).cpu().numpy()
        clipped += int((y_hat.abs() > 127).sum()) + int((z.abs() > 127).sum())
        ys[i] = y_hat[0].clamp_(-128, 127).to(torch.int8).cpu().numpy()
        zs[i] = z[0].clamp_(-128, 127).to(torch.int8).cpu().numpy()
    for arr in (xs, xts, ys, zs):
        arr.flush()
    manifest = {
        "version": CACHE_VERSION, "teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint.hex(),
        "decoder_fingerprint": teacher.decoder_fingerprint.hex(),
        "entries": [{"image": str(p), "mirrored": f} for p, f, _ in entries],
        "height": h, "width": w, "latent_channels": m, "values_clipped_to_int8": clipped,
        "command": command_line(), "seconds": round(time.time() - t0, 1), "hardware": hardware(device),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


class CachedTargets:
    """Batches (x, y_hat, x_teacher) from a cache folder: latent-aligned windows of `crop` pixels
    (the whole entry when crop is None or covers it), drawn with a seeded generator.

    The cache must hold the targets of the teacher with `teacher_fingerprint`; with `of_decoder`, those
    of any encoder whose latents that teacher decodes (itself, or an encoder tuned from it), which is
    all the integer h_s needs: it sees z and y_hat, never g_a."""

    def __init__(self, folder: Path, teacher_fingerprint: bytes, crop: int | None, seed: int, of_decoder: bool = False):
        folder = Path(folder)
        try:
            self.manifest = json.loads((folder / "manifest.json").read_text())
            self.x = np.load(folder / "x.npy", mmap_mode="r")
            self.x_teacher = np.load(folder / "x_teacher.npy", mmap_mode="r")
            self.y_hat = np.load(folder / "y_hat.npy", mmap_mode="r")
            self.z = np.load(folder / "z.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise LicError(f"{folder}: not a teacher-target cache ({e}); make one with `lic cache-targets`") from None
        if self.manifest.get("version") != CACHE_VERSION:
            raise LicError(f"{folder}: cache version {self.manifest.get('version')}, expected {CACHE_VERSION}")
        # Caches written before the field existed hold an untuned teacher's targets.
        held = self.manifest.get("decoder_fingerprint", self.manifest["teacher_fingerprint"]) if of_decoder \
            else self.manifest["teacher_fingerprint"]
        if held != teacher_fingerprint.hex():
            raise LicError(f"{folder} holds targets of teacher {self.manifest['teacher']} "
                           f"({self.manifest['teacher_fingerprint']}), not of this run's teacher "
                           f"({teacher_fingerprint.hex()})" + (" or an encoder tuned from it" if of_decoder else ""))
        n, h, w, _ = self.x.shape
        if crop is not None and crop % 16:
            raise LicError(f"--crop must be a multiple of 16, got {crop}")
        self.ch = h if crop is None else min(crop, h)
        self.cw = w if crop is None else min(crop, w)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.x.shape[0]

    def hyper(self, size: int):
        """(z symbols, y_hat) of `size` whole entries, as float tensors: what the integer h_s trains on."""
        idx = np.sort(self.rng.integers(len(self), size=size))
        return (torch.from_numpy(self.z[idx].astype(np.float32)), torch.from_numpy(self.y_hat[idx].astype(np.float32)))

    def __call__(self, size: int):
        """(x, y_hat, x_teacher, teacher features = []) as float tensors."""
        n, h, w, _ = self.x.shape
        lh, lw = self.ch // 16, self.cw // 16
        idx = self.rng.integers(n, size=size)
        oy = self.rng.integers(h // 16 - lh + 1, size=size)
        ox = self.rng.integers(w // 16 - lw + 1, size=size)
        x = np.stack([self.x[i, 16 * a:16 * (a + lh), 16 * b:16 * (b + lw)] for i, a, b in zip(idx, oy, ox)])
        xt = np.stack([self.x_teacher[i, 16 * a:16 * (a + lh), 16 * b:16 * (b + lw)]
                       for i, a, b in zip(idx, oy, ox)])
        y = np.stack([self.y_hat[i, :, a:a + lh, b:b + lw] for i, a, b in zip(idx, oy, ox)])

        def image(a):
            return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)
        return image(x), torch.from_numpy(y.astype(np.float32)), image(xt), []


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LicError(f"--device: not a torch device: {name!r} (cpu or cuda)") from None
    if device.type == "cuda":
        require_cuda(f"--device {name}")
        full_fp32_on_gpu()
    elif device.type != "cpu":
        raise LicError(f"--device {name}: cpu or cuda only")
    return device


def run(args) -> int:
    from training.teacher import load_teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    size = _parse_size(args.size)
    device = _device(args.device)
    teacher = load_teacher(args.teacher, quality=args.quality)
    images = training_images(args.data)
    m = build_cache(teacher, images, args.out, size, device)
    print(f"{len(m['entries'])} entries of {size[0]}x{size[1]} from {len(images)} images in {m['seconds']} s "
          f"-> {args.out} ({m['values_clipped_to_int8']} y_hat/z values clipped to int8)", file=sys.stderr)
    return 0
